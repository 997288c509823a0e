"""Autotune winners on disk (tuning_cache.py) and how the autotuner uses them (tuning.py).

Pure CPU: no kernel runs here; the GPU-only parts (device name, timing) are
replaced by a cache file in tmp_path.
"""

import json
import multiprocessing
import os

import pytest
import torch
import triton
from helpers import default_triton_switches

from resnet_kernels import _disk_cache
from resnet_kernels.triton import tuning, tuning_cache
from resnet_kernels.triton.tuning_cache import TuningCache

WINNER = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}


def test_entries_survive_a_new_process(tmp_path):
    path = str(tmp_path / "t.json")
    TuningCache(path).put("a", WINNER)
    TuningCache(path).put("b", {**WINNER, "BLOCK_M": 64})  # merges with what is on disk
    fresh = TuningCache(path)
    assert fresh.get("a") == WINNER and fresh.get("b")["BLOCK_M"] == 64 and fresh.get("c") is None


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\x00\xff\xfe", b"[1, 2]", b'{"a": [1, 2], "b": {"BLOCK_M": "big"}, "c": {"BLOCK_M": true}}', b""],
)
def test_a_corrupt_file_reads_as_empty_and_is_replaced(tmp_path, content):
    path = tmp_path / "t.json"
    path.write_bytes(content)
    cache = TuningCache(str(path))
    assert cache.get("a") is None and cache.get("b") is None and cache.get("c") is None
    cache.put("a", WINNER)
    assert json.loads(path.read_text()) == {"a": WINNER}


def test_an_unwritable_directory_only_loses_the_disk_copy(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = TuningCache(str(blocker / "t.json"))  # a directory that cannot be created
    cache.put("a", WINNER)
    assert cache.get("a") == WINNER


def _writer(path, worker, count):
    for i in range(count):
        TuningCache(path).put(f"w{worker}-{i}", {**WINNER, "BLOCK_M": i})


def _reader(path, count):
    """Exit 1 if the file is ever seen half-written (present but not JSON)."""
    for _ in range(count):
        try:
            with open(path, "rb") as f:
                json.loads(f.read())
        except FileNotFoundError:
            continue
        except ValueError:
            os._exit(1)


def test_concurrent_writers_always_leave_a_valid_file(tmp_path):
    path = str(tmp_path / "t.json")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 30)) for w in range(4)]
    procs.append(ctx.Process(target=_reader, args=(path, 3000)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    with open(path) as f:
        raw = json.load(f)
    written = {f"w{w}-{i}" for w in range(4) for i in range(30)}
    # Racing writers may drop each other's entries (costing a re-tune), never corrupt the file.
    assert raw and set(raw) <= written
    assert tuning_cache.read(path) == raw  # every entry well-formed
    assert os.listdir(tmp_path) == ["t.json"]  # no temporary files left behind


def test_default_path_names_gpu_and_versions(monkeypatch, tmp_path):
    import resnet_kernels

    monkeypatch.setenv(_disk_cache.CACHE_ENV, str(tmp_path))
    path = tuning_cache.default_path("NVIDIA H100 80GB HBM3")
    name = os.path.basename(path)
    assert os.path.dirname(path) == str(tmp_path)
    assert "NVIDIA_H100_80GB_HBM3" in name and triton.__version__ in name and resnet_kernels.__version__ in name


# --- the autotuner's use of the cache ---------------------------------------------------------


@pytest.fixture
def hopper(monkeypatch, tmp_path):
    """Hopper configs, with the disk cache in tmp_path instead of a GPU-named file, and the
    switches at their defaults (a test that needs one off sets it)."""
    default_triton_switches(monkeypatch)
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    monkeypatch.setattr(tuning, "disk_cache", lambda _device: TuningCache(str(tmp_path / "t.json")))
    return tuning.autotune_configs()


def _args(dtype=torch.float16, M=50176, K=64, C=64, R=3, S=3, SPLIT_K=1, TMA_OK=False, PERSISTENT_OK=True,
          STREAM_K_OK=False):
    return {"x_ptr": torch.empty(1, C, 1, 1, dtype=dtype), "M": M, "K": K, "C": C, "R": R, "S": S,
            "stride_h": 1, "stride_w": 1, "SPLIT_K": SPLIT_K, "ROW_RUN": False, "RUN": 1, "TMA_OK": TMA_OK,
            "PERSISTENT_OK": PERSISTENT_OK, "STREAM_K_OK": STREAM_K_OK}


def _tma(configs):
    """The TMA candidates, one-tile and persistent."""
    return [c for c in configs if c.kwargs["TMA"]]


def _persistent(configs):
    return [c for c in configs if c.kwargs["PERSISTENT"]]


def test_pruning_fits_tiles_to_the_shape(hopper):
    pruned = tuning.prune_configs(hopper, _args(K=64))
    assert pruned and all(c.kwargs["BLOCK_N"] <= 64 for c in pruned)
    small_m = tuning.prune_configs(hopper, _args(M=49, K=2048))
    assert small_m and all(c.kwargs["BLOCK_M"] == 64 for c in small_m)
    fp32 = tuning.prune_configs(hopper, _args(torch.float32, K=256))
    big = [c for c in hopper if c.kwargs["BLOCK_N"] == 256 and c.kwargs["BLOCK_K"] == 64]
    assert big and not any(c in fp32 for c in big)  # 3 x (128x64 + 64x256) fp32 tiles exceed shared memory


def test_stream_k_candidates_are_offered_where_allowed_and_ragged(hopper, monkeypatch):
    """With STREAM_K_OK, the stream-K tiles whose one-tile grid is ragged on the GPU (132 SMs) are
    timed; without it, or on a grid of full waves, none is."""
    monkeypatch.setattr(tuning, "num_sms", lambda device: 132)

    def stream_k_tiles(args):
        return [c for c in tuning.prune_configs(hopper, args) if c.kwargs["STREAM_K"]]

    ragged = dict(M=32 * 49, K=512, C=512)  # ResNet-50 layer4 3x3 at batch 32: 52 tiles of 128x128
    assert len(stream_k_tiles(_args(**ragged, STREAM_K_OK=True))) == len(tuning._HOPPER_STREAM_K)
    assert not stream_k_tiles(_args(**ragged))
    assert not stream_k_tiles(_args(M=256 * 49, K=512, C=512, STREAM_K_OK=True))  # 392 tiles: 3 full waves


def test_a_remembered_winner_skips_tuning(hopper):
    class Kernel:
        best_config = hopper[3]

    args = _args()
    assert len(tuning.prune_configs(hopper, args)) > 1
    tuning.remember(Kernel, args)
    assert tuning.prune_configs(hopper, args) == [hopper[3]]
    assert len(tuning.prune_configs(hopper, _args(C=128))) > 1  # another shape is tuned anew
    assert len(tuning.prune_configs(hopper, _args(SPLIT_K=4))) > 1  # so is another split of the same shape


def test_the_interpreter_gets_one_config(monkeypatch):
    monkeypatch.setattr(tuning, "interpreting", lambda: True)
    assert len(tuning.autotune_configs()) == 1
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    assert len(tuning.autotune_configs()) > 1


@pytest.mark.parametrize("c,block_k,flat", [(3, 32, True), (64, 32, False), (96, 64, True), (128, 64, False)])
def test_flat_reduction_when_channels_do_not_fill_block_k(c, block_k, flat):
    assert tuning.flat_k({"C": c, "BLOCK_K": block_k}) == flat


def test_autotune_off_runs_one_fitting_config_and_remembers_nothing(hopper, monkeypatch, tmp_path):
    monkeypatch.setenv(tuning.AUTOTUNE_ENV, "0")
    args = _args(K=64)
    pruned = tuning.prune_configs(hopper, args)
    assert len(pruned) == 1 and pruned[0].kwargs["BLOCK_N"] <= 64

    class Kernel:
        best_config = pruned[0]

    tuning.remember(Kernel, args)
    assert not (tmp_path / "t.json").exists()  # an untimed pick is not stored as a winner


# --- TMA candidates ---------------------------------------------------------------------------


def test_tma_candidates_only_where_tma_applies(hopper):
    """TMA tiles are extra candidates of calls that allow TMA (TMA_OK) and whose C their BLOCK_K
    divides; everywhere else the candidates are the pointer tiles of before."""
    gemm = _args(R=1, S=1, C=256, K=256, TMA_OK=True)
    assert len(_tma(tuning.prune_configs(hopper, gemm))) == len(tuning._HOPPER_TMA) + len(tuning._HOPPER_PERSISTENT)
    assert len(_persistent(tuning.prune_configs(hopper, gemm))) == len(tuning._HOPPER_PERSISTENT)
    assert not _tma(tuning.prune_configs(hopper, {**gemm, "TMA_OK": False}))
    assert not _tma(tuning.prune_configs(hopper, {**gemm, "C": 96}))  # BLOCK_K = 64 does not divide 96
    pointer = tuning.prune_configs(hopper, {**gemm, "TMA_OK": False})
    assert [c for c in tuning.prune_configs(hopper, gemm) if not c.kwargs["TMA"]] == pointer


def test_tma_candidates_come_after_the_pointer_ones(hopper, monkeypatch):
    """An untimed run (autotuning off) takes the first fitting candidate: still a pointer tile."""
    monkeypatch.setenv(tuning.AUTOTUNE_ENV, "0")
    (pick,) = tuning.prune_configs(hopper, _args(R=1, S=1, C=256, K=256, TMA_OK=True))
    assert not pick.kwargs["TMA"]


def test_a_remembered_tma_winner_is_kept_apart_from_its_pointer_twin(hopper):
    """The TMA flag is part of a cache entry (an int, like the rest) and TMA_OK part of the key."""
    args = _args(R=1, S=1, C=256, K=256, TMA_OK=True)
    winner = next(c for c in _tma(hopper) if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) == (128, 256))

    class Kernel:
        best_config = winner

    tuning.remember(Kernel, args)
    assert tuning.describe(winner)["TMA"] == 1
    assert tuning.prune_configs(hopper, args) == [winner]
    assert len(tuning.prune_configs(hopper, {**args, "TMA_OK": False})) > 1  # another key: tuned anew


def test_persistent_candidates_only_for_unsplit_tma_calls(hopper):
    """The persistent tiles are offered where the TMA ones are, except to a split reduction (whose
    grid has an axis of splits and whose epilogue runs in the reduce kernel)."""
    gemm = _args(R=1, S=1, C=256, K=256, TMA_OK=True)
    split = tuning.prune_configs(hopper, {**gemm, "SPLIT_K": 4})
    assert len(_tma(split)) == len(tuning._HOPPER_TMA) and not _persistent(split)
    assert not _persistent(tuning.prune_configs(hopper, {**gemm, "TMA_OK": False}))
    switched_off = tuning.prune_configs(hopper, {**gemm, "PERSISTENT_OK": False})
    assert not _persistent(switched_off) and len(_tma(switched_off)) == len(tuning._HOPPER_TMA)


@pytest.mark.parametrize("asked,allowed,tma,split_k,expected", [
    (1, True, True, 1, True), (0, True, True, 1, False), (1, False, True, 1, False), (1, True, False, 1, False),
    (1, True, True, 2, False)])
def test_persistent_flag_needs_the_switch_tma_loads_and_no_split(asked, allowed, tma, split_k, expected):
    args = {"PERSISTENT": asked, "PERSISTENT_OK": allowed, "TMA": tma, "SPLIT_K": split_k}
    assert tuning.persistent(args) == expected


def test_the_persistent_switch_is_part_of_the_tuning_key(hopper, monkeypatch):
    """A winner remembered with persistent candidates on is not reused with them switched off."""
    monkeypatch.delenv(tuning.PERSISTENT_ENV, raising=False)
    assert tuning.persistent_allowed()
    monkeypatch.setenv(tuning.PERSISTENT_ENV, "0")
    assert not tuning.persistent_allowed()
    args = _args(R=1, S=1, C=256, K=256, TMA_OK=True)
    winner = _persistent(hopper)[0]

    class Kernel:
        best_config = winner

    tuning.remember(Kernel, args)
    assert tuning.prune_configs(hopper, args) == [winner]
    assert tuning.shape_key(args) != tuning.shape_key({**args, "PERSISTENT_OK": False})
    assert not _persistent(tuning.prune_configs(hopper, {**args, "PERSISTENT_OK": False}))


def test_a_remembered_persistent_winner_is_kept_apart_from_its_one_tile_twin(hopper):
    """The PERSISTENT flag is part of a cache entry, so a persistent winner comes back as itself."""
    args = _args(R=1, S=1, C=256, K=256, TMA_OK=True)
    winner = next(c for c in _persistent(hopper) if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) == (128, 128))
    twin = next(c for c in _tma(hopper) if not c.kwargs["PERSISTENT"]
                and (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps) == (128, 128, 8))
    assert tuning.describe(twin) != tuning.describe(winner)

    class Kernel:
        best_config = winner

    tuning.remember(Kernel, args)
    assert tuning.describe(winner)["PERSISTENT"] == 1
    assert tuning.prune_configs(hopper, args) == [winner]


@pytest.mark.parametrize("tma_ok,c,block_k,expected", [(True, 128, 64, True), (False, 128, 64, False),
                                                       (True, 96, 64, False), (True, 96, 32, True)])
def test_tma_loads_need_the_call_and_a_dividing_block_k(tma_ok, c, block_k, expected):
    assert tuning.tma_loads({"TMA": 1, "TMA_OK": tma_ok, "C": c, "BLOCK_K": block_k}) == expected
    assert not tuning.tma_loads({"TMA": 0, "TMA_OK": tma_ok, "C": c, "BLOCK_K": block_k})
