"""Autotuning of the conv kernel: the candidate tiles, their pruning per shape,
and the on-disk memory of winners.

Key: the conv shape as the kernel sees it, (M, K, C, R, S, stride) with K and C
per (merged) group, the split-K factor, the walk flags that change which
candidates apply (ROW_RUN, TMA_OK, PERSISTENT_OK, STREAM_K_OK), plus the tensor
dtypes that triton.autotune appends itself.

Candidates: pointer-load tiles (_HOPPER) for every shape; TMA tiles
(_HOPPER_TMA, tma.py) and persistent TMA tiles (_HOPPER_PERSISTENT, the
PERSISTENT schedule of conv_kernel) where the call allows TMA loads; stream-K
tiles (_HOPPER_STREAM_K, the STREAM_K schedule) where the one-tile grid of that
tile leaves a ragged last wave. The autotuner keeps one of those only where it
beats the pointer tiles. They come last, so a run without timing (below) takes
the pointer tile it always took.

On a GPU a new key is timed over the configs that suit the shape (prune_configs);
a key whose winner is in the disk cache (tuning_cache.py) is pruned to that one
config, which triton.autotune then runs without timing anything. The wrapper
records each new winner with `remember` after the launch.

Under TRITON_INTERPRET=1 there is exactly one small config: the interpreter
cannot time kernels, and small tiles keep its numpy work small.

RESNET_KERNELS_TRITON_AUTOTUNE=0 skips the timing on a GPU: each shape runs the
first candidate that fits it, and nothing is written to the disk cache. For
correctness runs over many shapes, where tuning each would cost minutes.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import torch
import triton

from .tuning_cache import TuningCache, default_path

TUNING_KEY = ["M", "K", "C", "R", "S", "stride_h", "stride_w", "SPLIT_K", "ROW_RUN", "TMA_OK", "PERSISTENT_OK",
              "STREAM_K_OK"]

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): Hopper tiles for the
# shapes ResNets have (K = 64..2048 output channels, M from 49 to 800k pixels).
_HOPPER = [
    (128, 128, 64, 8, 3),
    (128, 256, 64, 8, 3),
    (128, 128, 32, 4, 4),
    (128, 64, 64, 4, 4),
    (64, 128, 64, 4, 4),
    (64, 64, 64, 4, 3),
    (64, 256, 32, 8, 3),
    (64, 64, 32, 4, 4),
]
# TMA candidates (tma.py): the same format, offered only where TMA loads apply
# (IS_GEMM walk, BLOCK_K | C). BLOCK_K = 64 only: every ResNet 1x1 has 64 | C.
# TMA frees the registers of the load addresses, so the 128x128 tile is also
# offered on 4 warps (128 accumulator registers per thread); 64x128 keeps a
# TMA candidate for the small-M late layers, where 128-row tiles are pruned.
_HOPPER_TMA = [
    (128, 256, 64, 8, 3),
    (128, 128, 64, 8, 4),
    (128, 128, 64, 4, 4),
    (128, 64, 64, 4, 4),
    (64, 128, 64, 4, 4),
]
# Persistent TMA candidates (the PERSISTENT schedule of conv_kernel, same format): a grid of
# persistent_programs programs, each walking output tiles in one software-pipelined loop, so a
# tile's epilogue (residual read, output store) runs while the next tile's operands are copied.
# Aimed at the memory-bound 1x1s with 1-4 k tiles per output tile (C = 64..256: most of
# ResNet-50's roofline floor), where a one-tile program spends most of its life filling the
# pipeline and in the epilogue. 128x64 runs two programs per SM (persistent_programs).
_HOPPER_PERSISTENT = [
    (128, 256, 64, 8, 3),
    (128, 128, 64, 8, 4),
    (128, 64, 64, 4, 3),
]
# Stream-K candidates (the STREAM_K schedule of conv_kernel, same format; pointer loads): one
# program per SM (two of the 128x64 tile, as persistent_programs), the programs sharing all
# tiles' reduction iterations evenly. For the grids of one to a few waves whose last wave is
# ragged: ResNet-50's layers 3-4 at batch 32 (the 7x7 3x3: 52 tiles of 128x128 on 132 SMs,
# 39% of them busy for the whole layer). Offered only there (stream_k_pays).
_HOPPER_STREAM_K = [
    (128, 128, 64, 8, 3),
    (128, 64, 64, 4, 4),
]
_INTERPRETER = (32, 32, 16, 4, 1)
# Programs of a persistent or stream-K launch under the interpreter: few, so each walks several
# tiles (tests set other counts to reach other overlaps of programs and tiles).
_INTERPRETER_PROGRAMS = 3

# Shared memory one config may use for its pipelined A and B tiles (H100: 227 KB
# per block; the rest is left for the epilogue's layout conversion).
_SMEM_BUDGET = 200 * 1024


AUTOTUNE_ENV = "RESNET_KERNELS_TRITON_AUTOTUNE"
# "0" leaves the persistent candidates out (read per call into the kernel's PERSISTENT_OK, part of
# the autotune key, so a remembered persistent winner is not reused with the switch off): for
# measuring the one-tile TMA tiles alone.
PERSISTENT_ENV = "RESNET_KERNELS_TRITON_PERSISTENT"
# "0" leaves the stream-K candidates out (read per call into STREAM_K_OK, part of the key).
STREAM_K_ENV = "RESNET_KERNELS_TRITON_STREAM_K"


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the host side (triton.cdiv is a JIT function: ~6 us a call from Python)."""
    return -(-a // b)


# Triton reads TRITON_INTERPRET when a kernel is defined, i.e. at import: so does this module.
_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreting() -> bool:
    return _INTERPRETING


def autotuning() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "1") != "0"


# Split-K: a grid with fewer programs than about half the SMs leaves most of the
# GPU idle (batch 1 on a 7x7 map: M = 49 pixels, 512 channels = 8 programs of the
# 64x64 tile on 132 SMs) while each program walks a long reduction (3x3x512 =
# 4608). Splitting the reduction into S ranges multiplies the programs by S; the
# price is S fp32 partial tiles written and read once (2 * S * M * K * 4 bytes:
# 4 MB for that layer at S = 16, against 4.7 MB of weights read anyway).
_SPLIT_TILE = 64  # edge of the smallest candidate tile: the most programs an unsplit grid can have
_MIN_SPLIT_ITERS = 4  # BLOCK_K=64 iterations each split keeps at least, so its pipeline still fills
_MAX_SPLIT = 16


def split_k(M: int, K: int, groups: int, reduction: int, num_sms: int) -> int:
    """How many ranges to split a reduction of length `reduction` (R*S*C) into.

    1 when the unsplit grid, counted with the smallest tile, already gives at
    least half the SMs a program; else enough splits to reach one program per
    SM, at most _MAX_SPLIT and keeping _MIN_SPLIT_ITERS iterations of 64 per split.
    """
    programs = cdiv(M, _SPLIT_TILE) * cdiv(K, _SPLIT_TILE) * groups
    if 2 * programs >= num_sms:
        return 1
    by_length = reduction // (_SPLIT_TILE * _MIN_SPLIT_ITERS)
    return max(1, min(cdiv(num_sms, programs), by_length, _MAX_SPLIT))


_sm_counts: dict = {}  # torch.device -> number of SMs


def num_sms(device) -> int:
    """SMs of a CUDA device (cached); 0 for the CPU, where nothing is split by default."""
    if device.type != "cuda":
        return 0
    if device not in _sm_counts:
        import torch

        _sm_counts[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _sm_counts[device]


def _config(spec, tma: bool = False, persistent: bool = False, stream_k: bool = False) -> triton.Config:
    """The autotune config of a (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) spec; `tma`: a
    candidate that asks for TMA loads, `persistent`: for the persistent TMA kernel (it implies
    TMA), `stream_k`: for the stream-K schedule (pointer loads). The flags are ints so that
    `describe` gives an all-int entry."""
    if stream_k and (tma or persistent):
        raise ValueError("a stream-K candidate loads by pointers: it cannot also be a TMA or persistent one")
    bm, bn, bk, warps, stages = spec
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "TMA": int(tma or persistent),
                          "PERSISTENT": int(persistent), "STREAM_K": int(stream_k)},
                         num_warps=warps, num_stages=stages)


def autotune_configs() -> list:
    if interpreting():
        return [_config(_INTERPRETER)]
    return ([_config(s) for s in _HOPPER] + [_config(s, tma=True) for s in _HOPPER_TMA]
            + [_config(s, persistent=True) for s in _HOPPER_PERSISTENT]
            + [_config(s, stream_k=True) for s in _HOPPER_STREAM_K])


def flat_k(args: dict) -> bool:
    """Walk the reduction over (r, s, c) flattened when channel slices would not fill BLOCK_K."""
    return args["C"] % args["BLOCK_K"] != 0


@functools.lru_cache(maxsize=None)
def no_tile_divides(C: int) -> bool:
    """No Hopper candidate's BLOCK_K divides C (the stem's 3, CIFAR's 16): every tuned config of
    the shape would walk the reduction flat, so the ROW_RUN walk (conv._row_run) takes it. With
    32 | C the tap-aligned walk stays open to the BLOCK_K = 32 candidates. The Hopper list, not
    the interpreter's config, decides, so the CPU tests take the walk a GPU takes."""
    return all(C % spec[2] for spec in _HOPPER)


@functools.lru_cache(maxsize=None)
def may_walk_flat(C: int) -> bool:
    """Whether some candidate's BLOCK_K leaves a flat walk (flat_k) for C channels: the host then
    passes the decode table (taps.py) the flat walk reads."""
    return any(C % spec[2] for spec in (*_HOPPER, _INTERPRETER))


def tma_loads(args: dict) -> bool:
    """The kernel's TMA flag: load A and B by TMA (tma.py). The config asks for it (its TMA kwarg,
    which this heuristic replaces by the decision), the call allows it (TMA_OK, tma.applies) and
    BLOCK_K divides C (the IS_GEMM walk proper, not FLAT_K). prune_configs offers TMA configs
    only where this holds; one forced onto another call (tests do) runs the pointer walk."""
    return bool(args["TMA"]) and args["TMA_OK"] and args["C"] % args["BLOCK_K"] == 0


def persistent_allowed() -> bool:
    """The host's PERSISTENT_OK: RESNET_KERNELS_TRITON_PERSISTENT is not "0"."""
    return os.environ.get(PERSISTENT_ENV, "1") != "0"


def persistent(args: dict) -> bool:
    """The kernel's PERSISTENT flag: walk output tiles in one flattened loop (conv_bn_act_kernel).
    The config asks for it, the call allows it (PERSISTENT_OK, persistent_allowed), the launch
    loads by TMA (the decided TMA flag, so this heuristic comes after tma_loads) and the reduction
    is not split (a split launch has a grid axis of splits and an epilogue of its own). TMA only:
    flattened, the pointer walks compile without a cp.async pipeline (benchmarks/NOTES.md), so
    they keep their one-tile programs."""
    return bool(args["PERSISTENT"]) and args["PERSISTENT_OK"] and bool(args["TMA"]) and args["SPLIT_K"] == 1


def _program_slots(block_m: int, block_n: int, sms: int) -> int:
    """Programs of a tile that run at once on a GPU of `sms` SMs: one per SM, two for tiles of at
    most 128x64 (4 warps, 72-96 KB of pipeline: two fit in an SM's shared memory and registers).
    Under the interpreter (no SMs) _INTERPRETER_PROGRAMS."""
    if sms == 0:
        return _INTERPRETER_PROGRAMS
    return sms * (2 if block_m * block_n <= 128 * 64 else 1)


def persistent_programs(tiles: int, groups: int, block_m: int, block_n: int, device) -> int:
    """Programs per group of a persistent launch over `tiles` output tiles per group: the GPU's
    program slots (_program_slots) shared among the groups, never more than there are tiles and
    at least one. Under the interpreter few, so that each program walks several tiles."""
    return max(1, min(tiles, _program_slots(block_m, block_n, num_sms(device)) // groups))


def stream_k_programs(groups: int, block_m: int, block_n: int, device) -> int:
    """Programs per group of a stream-K launch: the GPU's program slots shared among the groups,
    at least one. Not capped by the tiles: fewer tiles than programs is what stream-K is for
    (each tile's iterations then spread over several programs). Programs left without
    iterations (more programs than iterations) return at once."""
    return max(1, _program_slots(block_m, block_n, num_sms(device)) // groups)


def reduction_iters(args: dict, block_k: int) -> int:
    """Iterations of block_k the kernel's pointer walk takes over one output tile's reduction
    (conv_kernel._reduction_iters, without its TMA case: stream-K loads by pointers)."""
    if args["ROW_RUN"]:
        return cdiv(args["R"] * args["RUN"], block_k)
    if args["C"] % block_k:
        return cdiv(args["R"] * args["S"] * args["C"], block_k)
    return args["R"] * args["S"] * (args["C"] // block_k)


def kernel_groups(args: dict) -> int:
    """The (merged) groups the kernel's grid runs: x's channels over the channels per group."""
    return args["x_ptr"].shape[1] // args["C"]


# Stream-K is offered where the one-tile grid's waves keep less than this share of the GPU's
# program slots busy on average (a 1.5-wave grid: 75%; 52 tiles on 132 SMs: 39%), and each
# program still gets _MIN_SPLIT_ITERS iterations to pipeline.
_STREAM_K_BELOW_BUSY = 0.9
# The dtypes networks run in. In fp32 both stream-K tiles spill registers on sm_90 (17-75
# local stores, Triton 3.6; the one-tile twins do not): fp32 calls keep the one-tile grid.
_STREAM_K_DTYPES = (torch.float16, torch.bfloat16)


def stream_k_pays(spec: tuple, args: dict, sms: Optional[int] = None) -> bool:
    """Whether the stream-K tile `spec` may beat the one-tile grid for the call `args` on a GPU
    of `sms` SMs (default: the call's): fp16 or bf16 (_STREAM_K_DTYPES), the one-tile grid of
    that tile leaves a ragged last wave (_STREAM_K_BELOW_BUSY) and the reduction gives every
    program at least _MIN_SPLIT_ITERS iterations. False off the GPU."""
    bm, bn, bk = spec[:3]
    sms = num_sms(args["x_ptr"].device) if sms is None else sms
    if sms == 0 or args["x_ptr"].dtype not in _STREAM_K_DTYPES:
        return False
    tiles = cdiv(args["M"], bm) * cdiv(args["K"], bn) * kernel_groups(args)
    slots = _program_slots(bm, bn, sms)
    busy = tiles / (cdiv(tiles, slots) * slots)
    return busy < _STREAM_K_BELOW_BUSY and tiles * reduction_iters(args, bk) >= _MIN_SPLIT_ITERS * slots


def stream_k_allowed(args: dict) -> bool:
    """The host's STREAM_K_OK: not switched off (RESNET_KERNELS_TRITON_STREAM_K=0), the reduction
    not split, and some stream-K candidate pays on this GPU (stream_k_pays); under the
    interpreter, where nothing is timed, whenever a test forces a stream-K config."""
    if os.environ.get(STREAM_K_ENV, "1") == "0" or args["SPLIT_K"] != 1:
        return False
    return interpreting() or any(stream_k_pays(spec, args) for spec in _HOPPER_STREAM_K)


def stream_k(args: dict) -> bool:
    """The kernel's STREAM_K flag: the config asks for it and the call allows it (STREAM_K_OK),
    on a pointer walk (the decided TMA flag, so this heuristic comes after tma_loads)."""
    return bool(args["STREAM_K"]) and args["STREAM_K_OK"] and not args["TMA"]


def epilogue_halves(args: dict) -> bool:
    """Run the epilogue on two column halves of the tile (conv_kernel._epilogue_store).

    When the fp32 accumulator alone takes 128 registers per thread (128x256 on
    8 warps, 128x128 on 4), whole-tile per-channel vectors push the epilogue
    into spills on sm_90. Under the interpreter always, so the CPU tests run the
    split path; the whole-tile path is the same code without the split.
    """
    if args["BLOCK_N"] < 2:
        return False
    if interpreting():
        return True
    return args["BLOCK_M"] * args["BLOCK_N"] >= 128 * 32 * args.get("num_warps", 4)


def _fits(cfg: triton.Config, args: dict) -> bool:
    bm, bn, bk = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"]
    itemsize = args["x_ptr"].element_size()
    if cfg.num_stages * (bm * bk + bk * bn) * itemsize > _SMEM_BUDGET:
        return False
    # Tiles much larger than the problem only add masked work.
    if bn > max(64, triton.next_power_of_2(args["K"])) or bm > max(64, triton.next_power_of_2(args["M"])):
        return False
    return bk <= max(32, triton.next_power_of_2(args["R"] * args["S"] * args["C"]))


def shape_key(args: dict) -> str:
    """The disk-cache key of one launch (the autotune key written out, dtype included)."""
    dtype = str(args["x_ptr"].dtype).replace("torch.", "")
    values = "-".join(f"{name}{args[name]}" for name in TUNING_KEY)
    return f"{dtype}-{values}"


def describe(cfg: triton.Config) -> dict:
    return {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


_caches: dict = {}  # torch.device -> TuningCache


def disk_cache(device) -> TuningCache:
    """The winners file of `device`'s GPU model (looked up once per device)."""
    if device not in _caches:
        import torch

        _caches[device] = TuningCache(default_path(torch.cuda.get_device_name(device)))
    return _caches[device]


def _applies(cfg: triton.Config, args: dict, sms: Optional[int] = None) -> bool:
    """A pointer config applies to every call; a TMA config where it would load by TMA; a
    persistent one where it would also run persistent (tuning.persistent); a stream-K one where
    the call allows stream-K and that tile's one-tile grid is ragged on a GPU of `sms` SMs
    (default: the call's; stream_k_pays)."""
    if cfg.kwargs["STREAM_K"]:
        spec = (cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"])
        return bool(args["STREAM_K_OK"]) and stream_k_pays(spec, args, sms)
    if not cfg.kwargs["TMA"]:
        return True
    launch = {**args, **cfg.kwargs}
    launch["TMA"] = tma_loads(launch)  # the decision, as the heuristics make it before PERSISTENT
    return launch["TMA"] and (not cfg.kwargs["PERSISTENT"] or persistent(launch))


def prune_configs(configs: list, named_args: dict, **kwargs) -> list:
    """The known winner if the disk cache has one, else the configs that apply and fit the shape."""
    args = {**named_args, **kwargs}
    # No winners are kept for the interpreter (nothing is timed; the file is named after a GPU).
    known = None if interpreting() else disk_cache(args["x_ptr"].device).get(shape_key(args))
    for cfg in configs:
        if known is not None and describe(cfg) == known:
            return [cfg]
    usable = [cfg for cfg in configs if _applies(cfg, args)] or configs
    fitting = [cfg for cfg in usable if _fits(cfg, args)]
    fitting = fitting or [min(usable, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] * c.num_stages)]
    return fitting if autotuning() else fitting[:1]


def remember(kernel, args: dict) -> bool:
    """Store the config the autotuned `kernel` just ran for `args`, if new (GPU only). True when
    the disk cache now holds it: the autotuner keeps a key's winner, so later calls of the key
    need not ask again."""
    if interpreting() or not autotuning():
        return False  # nothing was timed: an untimed pick must not pass for a winner
    best: Optional[triton.Config] = getattr(kernel, "best_config", None)
    if best is None:
        return False
    cache = disk_cache(args["x_ptr"].device)
    key = shape_key(args)
    if cache.get(key) != describe(best):
        cache.put(key, describe(best))
    return True
