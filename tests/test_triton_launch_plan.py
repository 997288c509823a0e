"""The triton backend's launch plans (resnet_kernels/triton/conv.py: LaunchPlan, plan_key, _plan).

A call that leaves the output and the split to the backend reuses the plan of its signature
and only fills in its tensors. The plan must therefore give exactly the arguments kernel_args
computes from scratch, for every kind of call, and its key must change with everything a plan
depends on (alignment, switches, TF32), or a cached plan would launch a wrong walk. None of this
launches a kernel except the end-to-end tests. Tensors are on the GPU where there is one (the
decisions are then the GPU's: TMA, stream-K), else on the CPU under the interpreter.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from conftest import HAS_CUDA
from helpers import default_triton_switches, oracle, rel_error
from test_fuzz_contract import SEEDS, draw, tensors

from resnet_kernels import ops
from resnet_kernels.triton import conv, tma, tuning

DEVICE = "cuda" if HAS_CUDA else "cpu"

# Arguments the plan allocates anew per call: compared by shape, strides, dtype and device.
FRESH = ("out_ptr", "ws_ptr", "flags_ptr")


def assert_same_args(got: dict, want: dict, call: str = "") -> None:
    assert got.keys() == want.keys(), call
    for name, value in want.items():
        if name in FRESH and isinstance(value, torch.Tensor) and value is not want["x_ptr"]:
            other = got[name]
            assert (other.shape, other.stride(), other.dtype, other.device) == (
                value.shape, value.stride(), value.dtype, value.device), (call, name)
            if name == "flags_ptr":
                assert not other.any(), "stream-K flags must start at 0"
        elif isinstance(value, torch.Tensor):
            assert got[name] is value, (call, name)  # the call's own tensor (or the cached packed weight / table)
        else:
            assert got[name] == value and type(got[name]) is type(value), (call, name, got[name], value)


def plan_then_args(call_args: tuple) -> dict:
    return conv._plan(*call_args).args(*call_args[:5], *call_args[10:12])


@pytest.mark.parametrize("seed", SEEDS)
def test_a_cached_plan_gives_the_arguments_kernel_args_computes(seed):
    """A plan made for one call of a signature, filled with another call's tensors of the same
    signature, equals kernel_args of that other call (random calls of the whole contract)."""
    call = draw(seed)
    first = tensors(call, DEVICE, torch.Generator().manual_seed(seed))
    second = tensors(call, DEVICE, torch.Generator().manual_seed(seed + 1000))
    plan_then_args(first)
    assert len(conv._plans) == 1
    assert_same_args(plan_then_args(second), conv.kernel_args(*second)[0])
    assert len(conv._plans) == 1, "the second call of a signature made a new plan"


def _variants() -> dict:
    """Calls of one shape that differ from "base" in one property each."""
    g = torch.Generator().manual_seed(7)
    cl = torch.channels_last

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(DEVICE)

    x = randn(2, 16, 6, 6).to(memory_format=cl)
    w = randn(16, 16, 3, 3)
    v = torch.rand(16, generator=g).to(DEVICE)
    res = randn(2, 16, 6, 6)
    base = (x, w, v, v, res.to(memory_format=cl), (1, 1), (1, 1), (1, 1), 1, True, None, None, 1)

    def with_(**changes):
        names = ("x", "weight", "scale", "shift", "residual", "stride", "padding", "dilation", "groups", "relu",
                 "in_scale", "in_shift", "residual_stride")
        call = dict(zip(names, base))
        call.update(changes)
        return tuple(call.values())

    return {
        "base": base,
        "nchw residual": with_(residual=res),
        "sliced residual": with_(residual=randn(2, 32, 6, 6)[:, ::2]),
        "option-A residual": with_(residual=randn(2, 8, 11, 11), residual_stride=2),
        "no residual": with_(residual=None),
        "nchw x": with_(x=x.contiguous()),
        "krsc weight": with_(weight=w.to(memory_format=cl)),
        "no scale": with_(scale=None),
        "no shift": with_(shift=None),
        "fp64 scale": with_(scale=v.double()),
        "no relu": with_(relu=False),
        "prologue shift": with_(in_shift=v),
        "prologue scale": with_(in_scale=v),
        "dilation 2": with_(dilation=(2, 2), padding=(2, 2)),
        "stride 2 no pad": with_(stride=(2, 2), padding=(0, 0), residual=randn(2, 16, 2, 2)),
        "groups 2": with_(weight=w[:, :8].contiguous(), groups=2),
        "groups 4": with_(weight=w[:, :4].contiguous(), groups=4),
    }


def test_calls_that_differ_in_one_property_each_get_their_own_plan():
    """All variants' plans side by side in the cache: each call gets the arguments kernel_args
    computes for it, so no property a plan depends on is missing from plan_key."""
    variants = _variants()
    for call in variants.values():
        plan_then_args(call)
    assert len(conv._plans) == len(variants)
    for name, call in variants.items():
        got = plan_then_args(call)
        assert_same_args(got, conv.kernel_args(*call)[0], name)


def gemm_call(x: torch.Tensor) -> tuple:
    """A 1x1 fp16 call that TMA admits when x is 16-byte aligned (the interpreter has 'TMA', and
    so has a Hopper GPU), shaped like ResNet-50's layer4 1x1 at batch 32 so that stream-K pays
    on an H100 too (52 tiles of 128x128 on 132 SMs, 32 k tiles each)."""
    k, c = 512, x.shape[1]
    w = torch.randn(k, c, 1, 1, device=x.device).half()
    v = torch.rand(k, device=x.device)
    return (x, w, v, v, None, (1, 1), (0, 0), (1, 1), 1, True, None, None, 1)


def offset_x(shift_elements: int) -> torch.Tensor:
    """A (32, 2048, 7, 7) channels_last fp16 x starting `shift_elements` into a buffer."""
    n, c, h, w = 32, 2048, 7, 7
    base = torch.empty(n * c * h * w + 8, dtype=torch.float16, device=DEVICE)
    return base[shift_elements:shift_elements + n * c * h * w].view(n, h, w, c).permute(0, 3, 1, 2)


needs_tma = pytest.mark.skipif(
    HAS_CUDA and torch.cuda.get_device_capability() < (9, 0), reason="TMA needs a compute capability 9.0 GPU")


@needs_tma
def test_the_plan_follows_the_alignment_of_x(monkeypatch):
    default_triton_switches(monkeypatch)
    aligned, misaligned = gemm_call(offset_x(0)), gemm_call(offset_x(1))
    assert aligned[0].stride() == misaligned[0].stride() and aligned[0].data_ptr() % 16 == 0
    assert plan_then_args(aligned)["TMA_OK"]
    got = plan_then_args(misaligned)
    assert not got["TMA_OK"], "a misaligned x reused the plan of an aligned one"
    assert_same_args(got, conv.kernel_args(*misaligned)[0])
    assert len(conv._plans) == 2


@needs_tma
@pytest.mark.parametrize("env, flag", [(tma.TMA_ENV, "TMA_OK"), (tuning.PERSISTENT_ENV, "PERSISTENT_OK"),
                                       (tuning.STREAM_K_ENV, "STREAM_K_OK")])
def test_a_switch_turned_off_reaches_the_next_call(monkeypatch, env, flag):
    default_triton_switches(monkeypatch)
    call = gemm_call(offset_x(0))
    assert plan_then_args(call)[flag]
    monkeypatch.setenv(env, "0")
    assert not plan_then_args(call)[flag]
    monkeypatch.delenv(env)
    assert plan_then_args(call)[flag]


def test_torch_tf32_switch_reaches_the_next_call(monkeypatch):
    x = torch.randn(1, 8, 5, 5, device=DEVICE)
    call = (x, torch.randn(8, 8, 3, 3, device=DEVICE), None, None, None, (1, 1), (1, 1), (1, 1), 1, False, None, None,
            1)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert plan_then_args(call)["DOT_PRECISION"] == "tf32"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert plan_then_args(call)["DOT_PRECISION"] == "ieee"


def test_a_plan_holds_no_tensor_of_its_call():
    """The plans outlive the calls: they must not keep a call's activations alive."""
    x = torch.randn(1, 8, 6, 6, device=DEVICE).to(memory_format=torch.channels_last)
    residual = torch.randn(1, 8, 6, 6, device=DEVICE).to(memory_format=torch.channels_last)
    w, scale, shift = (torch.randn(8, 8, 3, 3, device=DEVICE), torch.rand(8, device=DEVICE),
                       torch.randn(8, device=DEVICE))
    out = conv.conv_bn_act(x, w, scale, shift, residual, (1, 1), (1, 1), (1, 1), 1, True, None, None, 1)
    refs = [weakref.ref(t) for t in (x, residual, scale, shift, out)]
    assert len(conv._plans) == 1
    del x, residual, scale, shift, out
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_repeated_calls_of_one_signature_compute_with_their_own_tensors(monkeypatch, gen):
    """Through the op, three calls of one signature with fresh inputs each: one plan, each
    result right for its own inputs (full fp32 dots, so that fp32's tolerance holds on a GPU)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    made = []
    init = conv.LaunchPlan.__init__
    monkeypatch.setattr(conv.LaunchPlan, "__init__", lambda self, *a: made.append(1) or init(self, *a))
    for _ in range(3):
        x = torch.randn(2, 16, 7, 7, generator=gen).to(DEVICE, memory_format=torch.channels_last)
        w = (torch.randn(24, 16, 3, 3, generator=gen) / 12).to(DEVICE)
        scale, shift = (torch.rand(24, generator=gen) + 0.5).to(DEVICE), torch.randn(24, generator=gen).to(DEVICE)
        residual = torch.randn(2, 24, 4, 4, generator=gen).to(DEVICE, memory_format=torch.channels_last)
        args = (x, w, scale, shift, residual, [2, 2], [1, 1], [1, 1], 1, True, None, None, 1)
        out = ops.conv_bn_act(*args, "triton")
        assert rel_error(out, oracle(*args)) < 1e-5
    assert len(made) == 1


def test_the_plan_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(conv, "_MAX_PLANS", 3)
    for n in range(1, 6):
        plan_then_args((torch.randn(n, 4, 3, 3, device=DEVICE), torch.randn(4, 4, 1, 1, device=DEVICE), None, None,
                        None, (1, 1), (0, 0), (1, 1), 1, False, None, None, 1))
        assert len(conv._plans) <= 3


def test_a_given_output_or_split_bypasses_the_plans():
    x = torch.randn(1, 8, 5, 5, device=DEVICE)
    w = torch.randn(8, 8, 1, 1, device=DEVICE)
    out = torch.full((1, 8, 5, 5), float("nan"), device=DEVICE)
    conv.conv_bn_act(x, w, None, None, None, (1, 1), (0, 0), (1, 1), 1, False, None, None, 1, out=out)
    conv.conv_bn_act(x, w, None, None, None, (1, 1), (0, 0), (1, 1), 1, False, None, None, 1, split_k=2)
    assert not conv._plans
    assert not out.isnan().any()
