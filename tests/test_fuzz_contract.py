"""Random calls of the op contract through the kernel backends, against the float64 oracle.

Each seed draws one call from the whole contract at once: groups, kernel size, stride, padding
and dilation per axis, odd spatial sizes, channel counts that fill no tile, fp32/fp16/bf16, an
NCHW, channels_last or sliced input, KCRS, KRSC or sliced weights, no residual / an output-
shaped one (NCHW, channels_last or sliced) / an option-A one (fewer channels, subsampled), the
pre-activation prologue, scale, shift and ReLU each on or off. The fixed test cases cover each
feature on its own; these cover their combinations. A second set of seeds forces a random Triton
schedule on such calls (a tile, the pointer, TMA, persistent or stream-K schedule, a split of the
reduction),
every other call a 1x1 GEMM that TMA admits. Seeds are fixed, so a failure is reproducible from
its test id, and the message names the call.

Tolerance (DESIGN.md): the error against float64 is at most twice that of eager PyTorch in the
same dtype (pre-activation and conv rounded to the dtype, as BatchNorm -> ReLU -> conv2d run
there), or REL_TOL, whichever is larger. A call whose ReLU keeps few, nearly cancelling outputs
has a large relative error in any low-precision implementation; the rule follows it instead of
failing there. On the CPU the Triton backend runs under the interpreter; on a GPU both backends
run (fp32 calls go to the cuda backend as fp16, which is all it takes).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_CUDA, needs_cuda, needs_extension
from helpers import (
    REL_TOL,
    default_triton_switches,
    force_triton_config,
    oracle,
    rel_error,
    triton_into_poisoned_output,
)

from resnet_kernels.functional import conv_bn_act

SEEDS = range(40)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Call:
    n: int
    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    dtype: str
    layout: str  # "channels_last", "nchw" or "sliced" (every other column of a wider tensor)
    weight_layout: str  # "plain" (KCRS), "channels_last" (KRSC) or "sliced" (every other filter)
    residual: str  # "none", "same" (NCHW), "same_cl", "same_sliced" (every other channel) or "option_a"
    residual_stride: int
    residual_channels: int
    prologue: str  # "none", "shift" or "scale_shift"
    scale: bool
    shift: bool
    relu: bool

    @property
    def out_hw(self):
        p = (self.h + 2 * self.padding[0] - self.dilation[0] * (self.r - 1) - 1) // self.stride[0] + 1
        return p, (self.w + 2 * self.padding[1] - self.dilation[1] * (self.s - 1) - 1) // self.stride[1] + 1


def draw(seed: int) -> Call:
    rng = random.Random(seed)
    groups = rng.choice([1, 1, 1, 2, 3, 4, 8])
    cg, kg = rng.choice([1, 2, 3, 4, 8, 16, 24, 64]), rng.choice([1, 2, 3, 8, 16, 40])
    r, s = rng.choice([(1, 1), (3, 3), (1, 3), (5, 5), (7, 7), (3, 1), (2, 2)])
    stride = rng.choice([(1, 1), (2, 2), (1, 2), (3, 3)])
    padding = (rng.randint(0, r // 2 + 1), rng.randint(0, s // 2 + 1))
    dilation = rng.choice([(1, 1), (1, 1), (2, 2), (2, 1)])
    # At least one output pixel: H + 2*pad >= dil*(R - 1) + 1.
    h = rng.randint(max(1, dilation[0] * (r - 1) + 1 - 2 * padding[0]), 14)
    w = rng.randint(max(1, dilation[1] * (s - 1) + 1 - 2 * padding[1]), 14)
    residual = rng.choice(["none", "same", "same_cl", "same_sliced", "option_a"])
    residual_stride = rng.choice([1, 2]) if residual == "option_a" else 1
    k = kg * groups
    return Call(
        n=rng.randint(1, 3), c=cg * groups, k=k, h=h, w=w, r=r, s=s, stride=stride, padding=padding,
        dilation=dilation, groups=groups, dtype=rng.choice(list(DTYPES)),
        layout=rng.choice(["channels_last", "channels_last", "nchw", "sliced"]),
        weight_layout=rng.choice(["plain", "channels_last", "sliced"]), residual=residual,
        residual_stride=residual_stride, residual_channels=rng.randint(1, k) if residual == "option_a" else k,
        prologue=rng.choice(["none", "none", "shift", "scale_shift"]), scale=rng.random() < 0.8,
        shift=rng.random() < 0.8, relu=rng.random() < 0.7,
    )


def tensors(call: Call, device: str, gen: torch.Generator) -> tuple:
    """The op's positional arguments for `call` (backend excluded), random, on `device`."""
    dtype = DTYPES[call.dtype]

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    x = randn(call.n, call.c, call.h, call.w * (2 if call.layout == "sliced" else 1))
    x = x[..., ::2] if call.layout == "sliced" else x
    x = x.contiguous(memory_format=torch.channels_last) if call.layout == "channels_last" else x
    cg = call.c // call.groups
    filters = call.k * (2 if call.weight_layout == "sliced" else 1)
    weight = randn(filters, cg, call.r, call.s) / math.sqrt(cg * call.r * call.s)
    weight = weight[::2] if call.weight_layout == "sliced" else weight
    weight = weight.contiguous(memory_format=torch.channels_last) if call.weight_layout == "channels_last" else weight
    p, q = call.out_hw
    residual = None
    if call.residual in ("same", "same_cl", "same_sliced"):
        residual = randn(call.n, call.k * (2 if call.residual == "same_sliced" else 1), p, q)
        residual = residual[:, 1::2] if call.residual == "same_sliced" else residual
        if call.residual == "same_cl":
            residual = residual.contiguous(memory_format=torch.channels_last)
    elif call.residual == "option_a":
        rs = call.residual_stride  # read as residual[:, :, ::rs, ::rs]: sizes that give p x q
        residual = randn(call.n, call.residual_channels, (p - 1) * rs + 1 + (rs - 1), (q - 1) * rs + 1)

    def vector(n, positive):
        v = torch.rand(n, generator=gen) + 0.5 if positive else torch.randn(n, generator=gen)
        return v.to(device)

    scale = vector(call.k, True) if call.scale else None
    shift = vector(call.k, False) if call.shift else None
    in_scale = vector(call.c, True) if call.prologue == "scale_shift" else None
    in_shift = vector(call.c, False) if call.prologue != "none" else None
    return (x, weight, scale, shift, residual, call.stride, call.padding, call.dilation, call.groups, call.relu,
            in_scale, in_shift, call.residual_stride)


def eager_in_dtype(args) -> torch.Tensor:
    """What eager PyTorch computes in the input dtype: BatchNorm + ReLU of the input rounded to
    the dtype, conv2d in the dtype, then scale, shift, residual and ReLU in fp32, rounded."""
    x, w, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift, rs = args
    if in_scale is not None or in_shift is not None:
        u = x.float()
        u = u * in_scale.view(1, -1, 1, 1) if in_scale is not None else u
        u = u + in_shift.view(1, -1, 1, 1) if in_shift is not None else u
        x = torch.relu(u).to(x.dtype)
    y = F.conv2d(x, w, None, stride, padding, dilation, groups).float()
    y = y * scale.view(1, -1, 1, 1) if scale is not None else y
    y = y + shift.view(1, -1, 1, 1) if shift is not None else y
    if residual is not None:
        sub = residual[:, :, ::rs, ::rs].float()
        y = y + F.pad(sub, (0, 0, 0, 0, 0, y.shape[1] - sub.shape[1]))
    return (torch.relu(y) if relu else y).to(x.dtype)


def check(call: Call, y: torch.Tensor, args) -> None:
    assert not torch.isnan(y).any(), f"unwritten (NaN) outputs: {asdict(call)}"
    ref = oracle(*args)
    err, eager = rel_error(y, ref), rel_error(eager_in_dtype(args), ref)
    # The oracle and eager PyTorch agree (0.44 x REL_TOL at worst over 1,500 seeds): a wrong
    # oracle must fail here, not widen the bound below until anything passes.
    assert eager <= 2 * REL_TOL[y.dtype], f"eager PyTorch is {eager:.3g} from the oracle: {asdict(call)}"
    bound = max(2 * eager, REL_TOL[y.dtype])
    assert err <= bound, f"error {err:.3g} > {bound:.3g} (eager {eager:.3g}): {asdict(call)}"


def test_the_draws_cover_the_contract():
    """The fixed seeds reach every value of every categorical field."""
    calls = [draw(seed) for seed in SEEDS]
    for field, values in [("dtype", DTYPES), ("layout", ["channels_last", "nchw", "sliced"]),
                          ("residual", ["none", "same", "same_cl", "same_sliced", "option_a"]),
                          ("weight_layout", ["plain", "channels_last", "sliced"]),
                          ("prologue", ["none", "shift", "scale_shift"]), ("relu", [True, False]),
                          ("groups", [1, 2, 3, 4, 8]), ("residual_stride", [1, 2])]:
        seen = {getattr(c, field) for c in calls}
        assert set(values) <= seen, f"{field}: the seeds never draw {set(values) - seen}"
    assert any(c.stride[0] != c.stride[1] for c in calls) and any(c.dilation != (1, 1) for c in calls)


@pytest.mark.parametrize("seed", SEEDS)
def test_triton_random_call(seed):
    call = draw(seed)
    device = "cuda" if HAS_CUDA else "cpu"
    args = tensors(call, device, torch.Generator().manual_seed(seed))
    check(call, triton_into_poisoned_output(args), args)


def draw_schedule(seed: int) -> tuple:
    """A call (every other one a 1x1 stride-1 GEMM in channels_last, the calls TMA takes) and a
    forced Triton schedule for it: a tile (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages), pointer,
    TMA, persistent or stream-K, a split of the reduction (None: the call's own choice), and the
    programs a persistent or stream-K launch has under the interpreter."""
    rng = random.Random(10_000 + seed)
    call = draw(seed)
    if seed % 2 == 0:  # a call TMA admits: fp16/bf16, 32 | C/groups (not ROW_RUN), 8 | K/groups, no prologue
        k = call.groups * rng.choice([8, 24, 40, 64])
        call = replace(call, r=1, s=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), layout="channels_last",
                       dtype=rng.choice(["fp16", "bf16"]), c=call.groups * rng.choice([32, 64]), k=k, prologue="none",
                       residual_channels=min(call.residual_channels, k) if call.residual == "option_a" else k)
    schedule = rng.choice(["pointer", "tma", "persistent", "stream_k"])
    tile = (rng.choice([16, 32, 64]), rng.choice([16, 32, 64]), rng.choice([16, 32]), 4, 1)
    split = None if schedule == "persistent" else rng.choice([None, 1, 2, 3])
    programs = rng.choice([2, 3, 5, 9])
    return call, schedule, tile, split, programs


SCHEDULE_SEEDS = range(32)


def _forced(monkeypatch, schedule, tile, programs):
    """Force the drawn schedule's config (helpers.force_triton_config) and the interpreter's
    programs of a persistent or stream-K launch."""
    from resnet_kernels.triton import tuning

    force_triton_config(monkeypatch, tile, tma=schedule in ("tma", "persistent"), persistent=schedule == "persistent",
                        stream_k=schedule == "stream_k")
    monkeypatch.setattr(tuning, "_INTERPRETER_PROGRAMS", programs)


@pytest.mark.parametrize("seed", SCHEDULE_SEEDS)
def test_triton_random_schedule(seed, monkeypatch):
    """The same random calls with a forced tile, schedule and split: the combinations of the walks
    with TMA, the persistent loop, stream-K's shared tiles and split-K partials that no fixed case
    reaches. A TMA, persistent or stream-K tile the call does not admit falls back to the one-tile
    pointer walk, as on a GPU."""
    call, schedule, tile, split, programs = draw_schedule(seed)
    _forced(monkeypatch, schedule, tile, programs)
    args = tensors(call, "cuda" if HAS_CUDA else "cpu", torch.Generator().manual_seed(seed))
    check(call, triton_into_poisoned_output(args, split_k=split), args)


def test_the_schedule_draws_reach_tma_persistent_stream_k_and_split(monkeypatch):
    """Across the seeds of test_triton_random_schedule the kernel takes the TMA walk, the
    persistent loop, stream-K and split reductions (decided as a launch decides them:
    kernel_args, then the config's heuristics via tuning._applies), so the test is not all
    pointer walks."""
    from resnet_kernels.triton import tuning
    from resnet_kernels.triton.conv import kernel_args

    seen = {"tma": 0, "persistent": 0, "stream_k": 0, "split": 0}
    for seed in SCHEDULE_SEEDS:
        call, schedule, tile, split, programs = draw_schedule(seed)
        _forced(monkeypatch, schedule, tile, programs)
        args, _ = kernel_args(*tensors(call, "cpu", torch.Generator().manual_seed(seed)), None, split)
        cfg = tuning._config(tile, tma=schedule in ("tma", "persistent"), persistent=schedule == "persistent")
        takes_tma = schedule in ("tma", "persistent") and tuning._applies(cfg, args)
        seen["tma"] += takes_tma and schedule == "tma"
        seen["persistent"] += takes_tma and schedule == "persistent"
        seen["stream_k"] += schedule == "stream_k" and args["STREAM_K_OK"]
        seen["split"] += args["SPLIT_K"] > 1
    assert min(seen.values()) >= 2, seen


@needs_cuda
@needs_extension
@pytest.mark.parametrize("seed", SEEDS)
def test_cuda_random_call(seed):
    call = draw(seed)
    if call.dtype == "fp32":
        call = replace(call, dtype="fp16")
    args = tensors(call, "cuda", torch.Generator().manual_seed(seed))
    x, w, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift, rs = args
    y = conv_bn_act(x, w, scale, shift, residual, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    relu=relu, in_scale=in_scale, in_shift=in_shift, residual_stride=rs, backend="cuda")
    check(call, y, args)
