"""Backend selection, availability messages and the measured `auto` choice."""

import json
import os

import pytest
import torch

import resnet_kernels
from resnet_kernels import autoselect, backends
from resnet_kernels._args import check_conv_args
from resnet_kernels.functional import conv_bn_act


def _inputs():
    g = torch.Generator().manual_seed(5)
    return torch.randn(1, 4, 6, 6, generator=g), torch.randn(4, 4, 3, 3, generator=g)


def test_selection_order(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert resnet_kernels.get_backend() == "auto"
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert resnet_kernels.get_backend() == "reference"
    resnet_kernels.set_backend("triton")
    assert resnet_kernels.get_backend() == "triton"  # set_backend beats the environment
    assert backends.resolve_name("cuda") == "cuda"  # the call's argument beats both
    resnet_kernels.set_backend(None)
    assert resnet_kernels.get_backend() == "reference"


def test_bad_names_are_rejected(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of"):
        resnet_kernels.set_backend("cudnn")
    monkeypatch.setenv(backends.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="RESNET_KERNELS_BACKEND='fast'"):
        resnet_kernels.get_backend()


def test_cuda_backend_on_cpu_tensors_says_what_is_missing():
    x, w = _inputs()
    with pytest.raises(backends.BackendUnavailableError, match="backend 'cuda'"):
        conv_bn_act(x, w, backend="cuda")


def test_triton_backend_without_interpreter_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x, w = _inputs()
    reason = backends.unavailable_reason("triton", x)
    assert reason is not None and "TRITON_INTERPRET=1" in reason and "cpu" in reason


def test_kernel_backends_refuse_float64_and_name_the_reference(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, _ = _inputs()
    reason = backends.unavailable_reason("triton", x.double())
    assert "float64" in reason and "reference" in reason


@pytest.mark.parametrize("interpret", ["0", "1"])
def test_auto_on_cpu_is_the_reference(interpret, monkeypatch):
    """Also with the Triton interpreter on (which makes triton available for CPU tensors): auto
    neither times it (no GPU clock) nor picks it."""
    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setattr(autoselect, "choose", lambda *a, **k: pytest.fail("auto timed backends on the CPU"))
    x, w = _inputs()
    torch.testing.assert_close(conv_bn_act(x, w, backend="auto"), conv_bn_act(x, w, backend="reference"))


def _auto_setup(monkeypatch, tmp_path, times):
    """Make `auto` see fake candidates timed by a fake timer, with its cache in tmp_path."""
    x, w = _inputs()
    args = (x, w, None, None, None, (1, 1), (0, 0), (1, 1), 1, True, None, None, 1)
    geometry = check_conv_args(x, w, None, None, None, 1, 0, 1, 1, None, None, 1)
    monkeypatch.setattr(backends, "available_kernels", lambda _x: list(times))
    monkeypatch.setattr(backends, "implementation", lambda name, _x: (lambda *a: name))
    monkeypatch.setattr(autoselect, "cache_path", lambda _d: str(tmp_path / "auto.json"))
    monkeypatch.setattr(autoselect, "_memory", {})
    calls = []

    def timer(fn):
        name = fn()
        calls.append(name)
        return times[name]

    return args, geometry, timer, calls


def test_auto_picks_the_fastest_and_caches_it_on_disk(monkeypatch, tmp_path):
    args, geometry, timer, calls = _auto_setup(monkeypatch, tmp_path, {"cuda": 2.0, "triton": 1.0, "reference": 3.0})
    assert autoselect.choose(args, geometry, timer=timer) == "triton"
    assert sorted(calls) == ["cuda", "reference", "triton"]
    stored = json.loads((tmp_path / "auto.json").read_text())
    assert list(stored.values()) == ["triton"]
    # A new process (empty memory) reads the file and measures nothing.
    monkeypatch.setattr(autoselect, "_memory", {})
    calls.clear()
    assert autoselect.choose(args, geometry, timer=timer) == "triton"
    assert calls == []


def test_auto_survives_a_corrupt_cache(monkeypatch, tmp_path):
    args, geometry, timer, calls = _auto_setup(monkeypatch, tmp_path, {"cuda": 1.0, "reference": 3.0})
    (tmp_path / "auto.json").write_text("{not json")
    assert autoselect.choose(args, geometry, timer=timer) == "cuda"
    assert json.loads((tmp_path / "auto.json").read_text())  # rewritten as valid JSON
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_auto_ignores_a_cached_backend_that_is_no_longer_available(monkeypatch, tmp_path):
    args, geometry, timer, calls = _auto_setup(monkeypatch, tmp_path, {"cuda": 1.0, "reference": 3.0})
    key = autoselect.signature(args, geometry)
    (tmp_path / "auto.json").write_text(json.dumps({key: "triton"}))
    assert autoselect.choose(args, geometry, timer=timer) == "cuda"


def test_auto_skips_a_failing_backend_with_a_warning(monkeypatch, tmp_path):
    args, geometry, _, _ = _auto_setup(monkeypatch, tmp_path, {"cuda": 1.0, "reference": 3.0})

    def timer(fn):
        if fn() == "cuda":
            raise RuntimeError("no kernel for this shape")
        return 3.0

    with pytest.warns(UserWarning, match="'cuda' failed"):
        assert autoselect.choose(args, geometry, timer=timer) == "reference"


def test_signature_distinguishes_what_changes_speed():
    x, w = _inputs()
    base = (x, w, None, None, None, (1, 1), (0, 0), (1, 1), 1, True, None, None, 1)
    geometry = check_conv_args(x, w, None, None, None, 1, 0, 1, 1, None, None, 1)
    keys = {
        autoselect.signature(base, geometry),
        autoselect.signature((x.half(), *base[1:]), geometry),
        autoselect.signature((x.contiguous(memory_format=torch.channels_last), *base[1:]), geometry),
        autoselect.signature(base[:9] + (False,) + base[10:], geometry),
    }
    assert len(keys) == 4
