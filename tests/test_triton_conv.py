"""The triton backend of the fused op against the float64 reference.

CPU cases run under the Triton interpreter (conftest.py sets TRITON_INTERPRET=1)
on small shapes that still reach every code path of the kernel: the plain-GEMM
1x1 (pointer loads, and TMA loads with a forced config), the tap-aligned and
the flattened (r, s, c) reduction, merged and unmerged groups, the prologue,
every epilogue feature and several memory formats.
Outputs are written into NaN-filled buffers (`out=`) so an element the kernel
missed shows up as NaN. The GPU cases run every distinct conv layer of the
ImageNet ResNets and hold the kernel to at most twice cuDNN's own error.
"""

import gc
import math
import zlib
from dataclasses import dataclass
from typing import Tuple, Union

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from conftest import HAS_CUDA, needs_cuda
from helpers import (
    REL_TOL,
    assert_within_cudnn_error,
    default_triton_switches,
    force_triton_config,
    oracle,
    rel_error,
    triton_into_poisoned_output,
    triton_launches,
)

import resnet_kernels
from resnet_kernels._args import output_memory_format
from resnet_kernels.layer_shapes import distinct_layers, model_layers
from resnet_kernels.triton import conv_bn_act, tuning, weights
from resnet_kernels.triton.conv_kernel import (
    _output_pixels,
    _pixel_rows,
    _reduction_iters,
    _stream_k_collect,
    _stream_k_publish,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
Pair = Union[int, Tuple[int, int]]


def _pair(v: Pair) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


@dataclass(frozen=True)
class Case:
    n: int
    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    stride: Pair = 1
    padding: Pair = 0
    dilation: Pair = 1
    groups: int = 1

    @property
    def conv(self):
        """(stride, padding, dilation, groups) in the form the backend takes them."""
        return _pair(self.stride), _pair(self.padding), _pair(self.dilation), self.groups

    @property
    def out_hw(self):
        (sh, sw), (ph, pw), (dh, dw), _ = self.conv
        return (self.h + 2 * ph - dh * (self.r - 1) - 1) // sh + 1, (self.w + 2 * pw - dw * (self.s - 1) - 1) // sw + 1


@pytest.fixture
def gen(request):
    """A generator seeded from the test's id: fresh inputs per case, the same on every run."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


def _randn(gen, *shape, dtype=torch.float32, channels_last=False, device="cpu"):
    t = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _positive(gen, n, device="cpu"):
    return (torch.rand(n, generator=gen) + 0.5).to(device)


def _inputs(case, dtype, gen, *, scale=True, shift=True, channels_last=True):
    x = _randn(gen, case.n, case.c, case.h, case.w, dtype=dtype, channels_last=channels_last)
    fan_in = case.c // case.groups * case.r * case.s
    w = (torch.randn(case.k, case.c // case.groups, case.r, case.s, generator=gen) / math.sqrt(fan_in)).to(dtype)
    sc = _positive(gen, case.k) if scale else None
    sh = torch.randn(case.k, generator=gen) if shift else None
    return x, w, sc, sh


def _poisoned(shape, dtype, memory_format, device="cpu"):
    return torch.full(shape, float("nan"), dtype=dtype, device=device).contiguous(memory_format=memory_format)


def _check(case, x, w, sc, sh, res=None, relu=True, in_scale=None, in_shift=None, residual_stride=1, split_k=None):
    """Run the kernel into a NaN-poisoned buffer and compare it with the float64 oracle."""
    args = (x, w, sc, sh, res, *case.conv, relu, in_scale, in_shift, residual_stride)
    out = _poisoned((case.n, case.k, *case.out_hw), x.dtype, output_memory_format(x), x.device)
    y = conv_bn_act(*args, out=out, split_k=split_k)
    assert y is out
    assert not torch.isnan(y).any(), "the kernel left elements of the output unwritten"
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[x.dtype], f"relative error {err:.3g} > {REL_TOL[x.dtype]:.3g}"
    return y


# --- geometry: every reduction path ---------------------------------------------------------

GEOMETRY = {
    "1x1_s1_gemm": (Case(2, 16, 32, 5, 5, 1, 1), torch.float16),
    "1x1_c20_flat": (Case(2, 20, 24, 4, 4, 1, 1), torch.float32),
    "1x1_s2_downsample": (Case(2, 16, 32, 7, 7, 1, 1, stride=2), torch.float16),
    "3x3_s1_p1": (Case(2, 16, 16, 6, 6, 3, 3, padding=1), torch.float16),
    "3x3_s2_p1": (Case(2, 16, 16, 7, 7, 3, 3, stride=2, padding=1), torch.float16),
    "7x7_s2_p3_stem_c3": (Case(1, 3, 16, 12, 12, 7, 7, stride=2, padding=3), torch.float16),
    "1x3_p01": (Case(2, 16, 16, 5, 6, 1, 3, padding=(0, 1)), torch.float32),
    "5x5_p2": (Case(1, 8, 16, 6, 6, 5, 5, padding=2), torch.float32),
    "3x5_stride21": (Case(1, 8, 16, 7, 9, 3, 5, stride=(2, 1), padding=(1, 2)), torch.float32),
    "3x3_dilation2": (Case(1, 16, 16, 7, 7, 3, 3, padding=2, dilation=2), torch.float16),
    "3x3_c32": (Case(1, 32, 16, 5, 5, 3, 3, padding=1), torch.float16),
    "c20_k40_odd_sizes": (Case(3, 20, 40, 5, 3, 3, 3, padding=1), torch.float32),
    "groups2_merged": (Case(2, 16, 16, 5, 5, 3, 3, padding=1, groups=2), torch.float16),
    "groups2_unmerged": (Case(1, 96, 96, 3, 3, 3, 3, padding=1, groups=2), torch.float16),
    "groups2_unmerged_flat": (Case(1, 80, 80, 3, 3, 3, 3, padding=1, groups=2), torch.float32),
    "groups16_resnext_c4": (Case(1, 64, 64, 3, 3, 3, 3, padding=1, groups=16), torch.bfloat16),
    "groups6_two_merged_flat": (Case(1, 72, 72, 3, 3, 3, 3, padding=1, groups=6), torch.float16),
    "depthwise_c8": (Case(2, 8, 8, 5, 5, 3, 3, padding=1, groups=8), torch.float32),
    "depthwise_c96": (Case(1, 96, 96, 4, 4, 3, 3, padding=1, groups=96), torch.float16),
}


@pytest.mark.parametrize("name", list(GEOMETRY))
def test_geometry(name, gen):
    case, dtype = GEOMETRY[name]
    _check(case, *_inputs(case, dtype, gen))


# A width-1 input may carry any stride for its width: PyTorch's NCHW (3, 16, 1, 1) has (16, 1, 1, 1),
# which also passes for channels_last. With C = 16 the ROW_RUN walk takes such calls, and it reads
# a tap row as one run from the pixel's position, so it must not trust that stride (a horizontal
# padding of 2 puts the run 2 pixels left of the only one).
@pytest.mark.parametrize("h,w_stride", [(1, "nchw"), (1, "channels_last"), (4, "channels_last"), (4, 7)])
def test_width_one_input_with_any_width_stride(h, w_stride, gen):
    case = Case(3, 16, 3, h, 1, 3, 3, stride=2, padding=(1, 2))
    x = _randn(gen, 3, 16, h, 1)
    if w_stride != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(w_stride, int):  # channels_last memory, an arbitrary stride on the size-1 width
        x = x.as_strided(x.shape, (x.stride(0), 1, x.stride(2), w_stride))
    _, w, sc, sh = _inputs(case, torch.float32, gen)
    _check(case, x, w, sc, sh)


# --- dtypes and the epilogue ----------------------------------------------------------------

CASE_3X3 = Case(2, 16, 16, 5, 5, 3, 3, padding=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scale,shift", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("relu", [True, False])
def test_dtypes_and_epilogue(dtype, scale, shift, relu, gen):
    x, w, sc, sh = _inputs(CASE_3X3, dtype, gen, scale=scale, shift=shift)
    res = _randn(gen, 2, 16, 5, 5, dtype=dtype, channels_last=True)
    y = _check(CASE_3X3, x, w, sc, sh, res, relu=relu)
    assert (y.float().min() >= 0) == relu  # random data: some outputs are negative without the ReLU


@pytest.mark.parametrize(
    "res_channels,residual_stride,res_channels_last",
    [(16, 1, False), (8, 1, True), (8, 2, True), (5, 2, False), (16, 3, True)],
)
def test_residual(res_channels, residual_stride, res_channels_last, gen):
    """Output-shaped and option-A residuals (fewer channels, subsampled), in either layout."""
    case = Case(2, 8, 16, 6, 6, 3, 3, padding=1)
    x, w, sc, sh = _inputs(case, torch.float16, gen)
    size = 6 * residual_stride - (residual_stride - 1)  # ceil(size / residual_stride) == 6
    res = _randn(gen, 2, res_channels, size, size, dtype=torch.float16, channels_last=res_channels_last)
    _check(case, x, w, sc, sh, res, residual_stride=residual_stride)


# --- the pre-activation prologue --------------------------------------------------------------


@pytest.mark.parametrize("in_scale,in_shift", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("name", ["3x3_s1_p1", "7x7_s2_p3_stem_c3", "1x1_s1_gemm"])
def test_preactivation(name, in_scale, in_shift, gen):
    case, dtype = GEOMETRY[name]
    x, w, sc, sh = _inputs(case, dtype, gen)
    pre_scale = _positive(gen, case.c) if in_scale else None
    # A positive shift makes relu(in_shift) > 0: a kernel that padded before pre() would differ.
    pre_shift = _positive(gen, case.c) if in_shift else None
    _check(case, x, w, sc, sh, in_scale=pre_scale, in_shift=pre_shift)


def test_padded_taps_read_zero_not_relu_of_shift(gen):
    """The preactivation test can tell the two padding orders apart on this case."""
    case, dtype = GEOMETRY["3x3_s1_p1"]
    x, w, sc, sh = _inputs(case, dtype, gen)
    pre_shift = _positive(gen, case.c)
    y = _check(case, x, w, sc, sh, in_shift=pre_shift)
    # Padding before pre(): the border taps would read relu(in_shift) instead of 0.
    padded = F.pad(x.double(), (1, 1, 1, 1))
    wrong = oracle(padded, w, sc, sh, None, (1, 1), (0, 0), (1, 1), 1, True, None, pre_shift, 1)
    assert rel_error(y, wrong) > 10 * REL_TOL[dtype]


# --- NaN in the input: propagated as torch propagates it -----------------------------------------


@pytest.mark.parametrize("prologue", [False, True])
@pytest.mark.parametrize("name", ["3x3_s1_p1", "7x7_s2_p3_stem_c3", "1x1_s1_gemm", "c20_k40_odd_sizes"])
def test_nan_input_propagates_like_torch(name, prologue, gen):
    """One NaN pixel channel: exactly the outputs whose window holds it are NaN (torch.relu keeps
    NaN; a max that drops it would turn them into 0, a walk that multiplies a neighbouring pixel's
    value by a zero weight row would spread it), and the rest are right."""
    case, dtype = GEOMETRY[name]
    x, w, sc, sh = _inputs(case, dtype, gen)
    x[0, case.c - 1, case.h // 2, case.w // 2] = float("nan")
    pre = (_positive(gen, case.c), torch.randn(case.c, generator=gen)) if prologue else (None, None)
    args = (x, w, sc, sh, None, *case.conv, True, *pre, 1)
    y = triton_into_poisoned_output(args)
    ref = oracle(*args)
    assert ref.isnan().any() and not ref.isnan().all()
    assert torch.equal(y.isnan(), ref.isnan()), f"{int(y.isnan().sum())} NaN outputs, torch has {int(ref.isnan().sum())}"
    finite = ~ref.isnan()
    assert rel_error(y[finite], ref[finite]) <= REL_TOL[dtype]


# --- narrow channel counts: the ROW_RUN and FLAT_K walks ------------------------------------------


def _walk(case, x, w, in_shift=None):
    from resnet_kernels.triton.conv import kernel_args

    args, _ = kernel_args(x, w, None, None, None, *case.conv, True, None, in_shift, 1)
    return "row_run" if args["ROW_RUN"] else "flat_or_tap"


@pytest.mark.parametrize(
    "name,layout,expected",
    [
        ("7x7_s2_p3_stem_c3", "channels_last", "row_run"),
        ("1x1_c20_flat", "channels_last", "row_run"),
        ("c20_k40_odd_sizes", "channels_last", "row_run"),
        ("7x7_s2_p3_stem_c3", "nchw", "flat_or_tap"),  # pixels are not contiguous runs
        ("7x7_s2_p3_stem_c3", "prologue", "flat_or_tap"),  # the prologue needs each column's channel
        ("3x3_dilation2", "channels_last", "flat_or_tap"),  # taps of a row are not adjacent
        ("groups2_unmerged_flat", "channels_last", "flat_or_tap"),  # a group's channels are not a pixel's run
        ("3x3_s1_p1", "channels_last", "row_run"),  # C = 16: BLOCK_K = 32 or 64 would walk it flat
        ("3x3_c32", "channels_last", "flat_or_tap"),  # C = 32: the BLOCK_K = 32 candidates walk it tap-aligned
    ],
)
def test_narrow_channel_walks(name, layout, expected, gen):
    """Which walk a narrow-channel call takes, and that it is right (padding on both sides)."""
    case, dtype = GEOMETRY[name]
    x, w, sc, sh = _inputs(case, dtype, gen, channels_last=layout != "nchw")
    in_shift = torch.randn(case.c, generator=gen) if layout == "prologue" else None
    assert _walk(case, x, w, in_shift) == expected
    _check(case, x, w, sc, sh, in_shift=in_shift)


@pytest.mark.parametrize("split_k", [1, 3])
def test_row_run_block_k_wider_than_a_tap_row(split_k, gen, monkeypatch):
    """BLOCK_K = 64 over the stem's 7 tap rows of RUN = 32: the last k tile is half past the packed
    weights (r = 7), which the walk must mask; the interpreter's own BLOCK_K = 16 never gets there."""
    force_triton_config(monkeypatch, (32, 16, 64, 4, 1))
    case, dtype = GEOMETRY["7x7_s2_p3_stem_c3"]
    x, w, sc, sh = _inputs(case, dtype, gen)
    assert _walk(case, x, w) == "row_run"
    _check(case, x, w, sc, sh, split_k=split_k)


def _random_case(seed):
    """A small random conv (seeded): channel counts on both sides of BLOCK_K, any filter up to
    5x5, strides 1-3, padding 0-2 (kept below the filter), dilation 1-2, 1-2 groups."""
    rng = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=rng))]

    groups = pick([1, 1, 2])
    c = groups * pick([1, 2, 3, 5, 8, 16, 20, 24])
    k = groups * pick([4, 8, 12, 16, 24])
    r, s_ = pick([1, 2, 3, 5]), pick([1, 2, 3, 5])
    dil = (pick([1, 1, 2]), pick([1, 1, 2]))
    pad = (min(pick([0, 1, 2]), dil[0] * (r - 1)), min(pick([0, 1, 2]), dil[1] * (s_ - 1)))
    stride = (pick([1, 2, 3]), pick([1, 2, 3]))
    h, w = dil[0] * (r - 1) + 1 + pick([0, 2, 5]), dil[1] * (s_ - 1) + 1 + pick([0, 3, 6])
    return Case(pick([1, 2]), c, k, h, w, r, s_, stride, pad, dil, groups), pick([True, False]), pick([True, False])


@pytest.mark.parametrize("block_k", [16, 32, 64])
@pytest.mark.parametrize("seed", range(12))
def test_random_geometries(seed, block_k, gen, monkeypatch):
    """Random geometries, layouts, residuals and prologues at BLOCK_K 16, 32 and 64, which move
    the same channel counts between the tap-aligned, ROW_RUN and FLAT_K walks."""
    force_triton_config(monkeypatch, (32, 16, block_k, 4, 1))
    case, channels_last, with_prologue = _random_case(1000 * block_k + seed)
    x, w, sc, sh = _inputs(case, torch.float16, gen, channels_last=channels_last)
    res = _randn(gen, case.n, case.k, *case.out_hw, dtype=torch.float16, channels_last=channels_last)
    in_shift = torch.randn(case.c, generator=gen) if with_prologue else None
    _check(case, x, w, sc, sh, res, in_shift=in_shift)


# --- TMA loads of the plain-GEMM walk (tma.py) ---------------------------------------------------

# The interpreter's tile as a TMA candidate; the interpreter never takes TMA on its own.
TMA_SPEC = (32, 32, 16, 4, 1)


TMA_CASES = {
    # M = 50: the second 32-row tile ends past M; K = 40: the second 32-column tile past K.
    "m_and_k_ragged": Case(2, 32, 40, 5, 5, 1, 1),
    # Two unmerged groups of 48 channels: group 1 reads A's columns and B's rows from 48 on;
    # K = 40 per group, so group 0's second N tile reaches past its own columns.
    "groups2": Case(1, 96, 80, 3, 5, 1, 1, groups=2),
    # Eight groups of 8 channels merged into one block-diagonal group of 64.
    "groups8_merged": Case(1, 64, 64, 4, 3, 1, 1, groups=8),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(TMA_CASES))
@pytest.mark.parametrize("epilogue", ["scale_shift_residual_relu", "bare", "shift_residual"])
def test_tma_walk(name, dtype, epilogue, gen, monkeypatch):
    """The TMA candidate forced on: it takes the TMA loads and matches the float64 reference,
    every output element written (NaN-poisoned out), with and without each epilogue feature."""
    force_triton_config(monkeypatch, TMA_SPEC, tma=True)
    kwargs = _check_epilogue_variant(TMA_CASES[name], dtype, epilogue, gen, monkeypatch)
    assert kwargs["TMA_OK"] and kwargs["TMA"] and not kwargs["PERSISTENT"]
    assert list(kwargs["a_desc"].block_shape) == [TMA_SPEC[0], TMA_SPEC[2]]
    assert list(kwargs["b_desc"].block_shape) == [TMA_SPEC[2], TMA_SPEC[1]]


def _check_epilogue_variant(case, dtype, epilogue, gen, monkeypatch) -> dict:
    """_check with the epilogue features named in `epilogue` (scale, shift, residual, relu); without
    relu, some outputs must be negative. Returns the kernel arguments of the one launch."""
    launches = triton_launches(monkeypatch)
    x, w, sc, sh = _inputs(case, dtype, gen, scale="scale" in epilogue, shift="shift" in epilogue)
    res = _randn(gen, case.n, case.k, *case.out_hw, dtype=dtype, channels_last=True) if "residual" in epilogue else None
    y = _check(case, x, w, sc, sh, res, relu="relu" in epilogue)
    if "relu" not in epilogue:
        assert y.float().min() < 0
    (kwargs,) = launches
    return kwargs


@pytest.mark.parametrize("split_k", [2, 3])
def test_tma_walk_split_k(split_k, gen, monkeypatch):
    """Split-K ranges of the TMA walk (C = 96: 6 k tiles of 16) with the option-A residual."""
    force_triton_config(monkeypatch, TMA_SPEC, tma=True)
    launches = triton_launches(monkeypatch)
    case = Case(2, 96, 48, 3, 4, 1, 1)
    x, w, sc, sh = _inputs(case, torch.float16, gen)
    res = _randn(gen, case.n, case.k // 2, *case.out_hw, dtype=torch.float16)
    _check(case, x, w, sc, sh, res, split_k=split_k)
    assert launches[0]["TMA"] and launches[0]["SPLIT"]


def _misaligned_channels_last(gen, case, dtype):
    """channels_last x whose base is 2 bytes past a 16-byte boundary (a channel slice starting at
    channel 1), while its row stride (C + 8 channels) stays a multiple of 16 bytes."""
    big = _randn(gen, case.n, case.c + 8, case.h, case.w, dtype=dtype, channels_last=True)
    x = big[:, 1:case.c + 1]
    assert x.data_ptr() % 16 != 0 and x.stride(3) * x.element_size() % 16 == 0
    return x


@pytest.mark.parametrize("what", ["nchw", "misaligned_base", "prologue", "3x3", "float32", "narrow_k", "block_k"])
def test_tma_walk_is_not_taken_where_it_must_not_be(what, gen, monkeypatch):
    """With the TMA candidate forced on, calls TMA cannot serve run the pointer walk (and are right):
    NCHW x (channel stride not 1), a base off the 16-byte grid, the pre-activation prologue (A has
    to pass through registers), a 3x3 (not the GEMM walk), fp32, 4 output channels (an 8-byte
    weight row) and the config's BLOCK_K not dividing C (64 and 32: the FLAT_K walk)."""
    force_triton_config(monkeypatch, (32, 32, 64, 4, 1) if what == "block_k" else TMA_SPEC, tma=True)
    launches = triton_launches(monkeypatch)
    case = {"3x3": Case(2, 32, 32, 5, 5, 3, 3, padding=1), "narrow_k": Case(2, 32, 4, 5, 5, 1, 1)}.get(
        what, Case(2, 32, 32, 5, 5, 1, 1))
    dtype = torch.float32 if what == "float32" else torch.float16
    x, w, sc, sh = _inputs(case, dtype, gen, channels_last=what != "nchw")
    if what == "misaligned_base":
        x = _misaligned_channels_last(gen, case, dtype)
    in_shift = torch.randn(case.c, generator=gen) if what == "prologue" else None
    _check(case, x, w, sc, sh, in_shift=in_shift)
    (kwargs,) = launches
    assert not kwargs["TMA"] and isinstance(kwargs["a_desc"], torch.Tensor)
    assert kwargs["TMA_OK"] == (what == "block_k")  # BLOCK_K is the config's, decided per launch


def test_tma_can_be_switched_off(gen, monkeypatch):
    """RESNET_KERNELS_TRITON_TMA=0: no call allows TMA, a forced TMA candidate runs the pointer walk."""
    from resnet_kernels.triton import tma

    force_triton_config(monkeypatch, TMA_SPEC, tma=True)
    monkeypatch.setenv(tma.TMA_ENV, "0")
    launches = triton_launches(monkeypatch)
    case = TMA_CASES["m_and_k_ragged"]
    _check(case, *_inputs(case, torch.float16, gen))
    assert not launches[0]["TMA_OK"] and not launches[0]["TMA"]


def test_tma_is_off_by_default_under_the_interpreter(gen, monkeypatch):
    default_triton_switches(monkeypatch)
    launches = triton_launches(monkeypatch)
    case = TMA_CASES["m_and_k_ragged"]
    _check(case, *_inputs(case, torch.float16, gen))
    assert launches[0]["TMA_OK"] and not launches[0]["TMA"]


def test_tma_needs_hopper(monkeypatch):
    """Off the interpreter, TMA_OK needs a CUDA device of compute capability >= 9.0."""
    from resnet_kernels.triton import tma
    from resnet_kernels.triton.conv import kernel_args

    default_triton_switches(monkeypatch)

    case = TMA_CASES["m_and_k_ragged"]
    x, w, sc, sh = _inputs(case, torch.float16, torch.Generator().manual_seed(0))
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    assert not tma.device_has_tma(torch.device("cpu"))
    args, _ = kernel_args(x, w, sc, sh, None, *case.conv, True, None, None, 1)
    assert not args["TMA_OK"]
    monkeypatch.setattr(tma, "device_has_tma", lambda device: True)
    args, _ = kernel_args(x, w, sc, sh, None, *case.conv, True, None, None, 1)
    assert args["TMA_OK"]


# --- the persistent schedule of the TMA walk (conv_bn_act_kernel, PERSISTENT) ---------------------

PERSISTENT_CASES = {
    "m_and_k_ragged": TMA_CASES["m_and_k_ragged"],  # 4 tiles
    "groups2": TMA_CASES["groups2"],  # 2 tiles per group, one program each
    # Eight groups of 8 channels merged into one group of 64: M = 40, 4 tiles.
    "groups8_merged": Case(2, 64, 64, 4, 5, 1, 1, groups=8),
    # M = 126: 4 row tiles (the last ends past M) x 3 column tiles (the last past K = 72) = 12
    # tiles for the interpreter's 3 programs, 4 each; C = 64: 4 k tiles per output tile.
    "four_tiles_per_program": Case(2, 64, 72, 7, 9, 1, 1),
}


def _tiles(kwargs, spec):
    """Output tiles of one (merged) group of a launch with these kernel arguments."""
    return tuning.cdiv(kwargs["M"], spec[0]) * tuning.cdiv(kwargs["K"], spec[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(PERSISTENT_CASES))
@pytest.mark.parametrize("epilogue", ["scale_shift_residual_relu", "bare", "shift_residual"])
def test_persistent_walk(name, dtype, epilogue, gen, monkeypatch):
    """The persistent candidate forced on: a grid of fewer programs than tiles, each walking
    several tiles (groups: each group its own programs), every output element written once
    and right, with and without each epilogue feature."""
    force_triton_config(monkeypatch, TMA_SPEC, persistent=True)
    kwargs = _check_epilogue_variant(PERSISTENT_CASES[name], dtype, epilogue, gen, monkeypatch)
    assert kwargs["PERSISTENT"] and kwargs["TMA"]
    programs, groups, splits = kwargs["grid"](kwargs)
    tiles = _tiles(kwargs, TMA_SPEC)
    assert splits == 1 and programs == max(1, min(tiles, tuning._INTERPRETER_PROGRAMS // groups))
    assert programs < tiles, "every program should walk more than one tile here"


@pytest.mark.parametrize("what", ["split_k", "nchw", "prologue"])
def test_persistent_walk_is_not_taken_where_it_must_not_be(what, gen, monkeypatch):
    """With the persistent candidate forced on: a split reduction runs the one-tile TMA walk with
    its split epilogue; calls TMA cannot serve (NCHW x, a prologue) run the pointer walk."""
    force_triton_config(monkeypatch, TMA_SPEC, persistent=True)
    launches = triton_launches(monkeypatch)
    case = PERSISTENT_CASES["four_tiles_per_program"]
    x, w, sc, sh = _inputs(case, torch.float16, gen, channels_last=what != "nchw")
    in_shift = torch.randn(case.c, generator=gen) if what == "prologue" else None
    _check(case, x, w, sc, sh, in_shift=in_shift, split_k=2 if what == "split_k" else None)
    kwargs = launches[0]
    assert not kwargs["PERSISTENT"]
    assert kwargs["TMA"] == (what == "split_k")
    assert kwargs["grid"](kwargs) == (_tiles(kwargs, TMA_SPEC), 1, 2 if what == "split_k" else 1)


def test_persistent_schedule_can_be_switched_off(gen, monkeypatch):
    """RESNET_KERNELS_TRITON_PERSISTENT=0: a forced persistent candidate runs the one-tile TMA walk."""
    force_triton_config(monkeypatch, TMA_SPEC, persistent=True)
    monkeypatch.setenv(tuning.PERSISTENT_ENV, "0")
    launches = triton_launches(monkeypatch)
    case = PERSISTENT_CASES["four_tiles_per_program"]
    _check(case, *_inputs(case, torch.float16, gen))
    kwargs = launches[0]
    assert not kwargs["PERSISTENT_OK"] and not kwargs["PERSISTENT"] and kwargs["TMA"]
    assert kwargs["grid"](kwargs) == (_tiles(kwargs, TMA_SPEC), 1, 1)


def test_persistent_programs():
    """One program per SM (two for tiles of at most 128x64), split among the groups, never more
    than the tiles, at least one; the interpreter's fixed few on the CPU."""
    gpu = torch.device("cuda", 0)
    tuning._sm_counts[gpu] = 132
    try:
        assert tuning.persistent_programs(1000, 1, 128, 128, gpu) == 132
        assert tuning.persistent_programs(1000, 1, 128, 64, gpu) == 264
        assert tuning.persistent_programs(100, 1, 128, 256, gpu) == 100
        assert tuning.persistent_programs(1000, 2, 128, 128, gpu) == 66
        assert tuning.persistent_programs(1000, 200, 128, 128, gpu) == 1
    finally:
        del tuning._sm_counts[gpu]
    assert tuning.persistent_programs(1000, 1, 128, 128, torch.device("cpu")) == tuning._INTERPRETER_PROGRAMS


# --- split-K -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split_k", [2, 3, 7])
@pytest.mark.parametrize("name", ["3x3_s2_p1", "7x7_s2_p3_stem_c3", "1x1_s1_gemm", "groups2_unmerged",
                                  "groups16_resnext_c4"])
def test_split_k(name, split_k, gen):
    """Split reductions, the epilogue in the second kernel: every feature, uneven and empty splits.

    Under the interpreter these reductions have 1-9 iterations, so 3 and 7 splits
    leave some splits short and some empty.
    """
    case, dtype = GEOMETRY[name]
    x, w, sc, sh = _inputs(case, dtype, gen)
    res = _randn(gen, case.n, case.k // 2, *case.out_hw, dtype=dtype)  # option A: half the channels
    pre_shift = torch.randn(case.c, generator=gen)
    y = _check(case, x, w, sc, sh, res, in_shift=pre_shift, split_k=split_k)
    again = conv_bn_act(x, w, sc, sh, res, *case.conv, True, None, pre_shift, 1, split_k=split_k)
    assert torch.equal(y, again), "split-K sums in a fixed order: the same inputs give the same bits"


@pytest.mark.parametrize("split_k", [0, -2, 1.5])
def test_split_k_must_be_a_positive_int(split_k, gen):
    case = Case(1, 8, 16, 4, 4, 1, 1)
    x, w, sc, sh = _inputs(case, torch.float32, gen)
    with pytest.raises(ValueError, match="split_k must be a positive int"):
        conv_bn_act(x, w, sc, sh, None, *case.conv, True, None, None, 1, split_k=split_k)


def _resnet50_layer(name):
    return next(layer for layer in model_layers("resnet50") if layer.name == name)


@pytest.mark.parametrize(
    "name,batch,expected",
    [
        ("layer4.1.conv2", 1, 16),  # 8 programs of 64x64, 4608-long reduction: 16 splits (the cap)
        ("layer3.1.conv2", 1, 9),  # 16 programs, 2304 long: 9 splits of 4 BLOCK_K=64 steps
        ("layer4.1.conv2", 32, 1),  # 200 programs fill 132 SMs
        ("layer1.0.conv1", 1, 1),  # 49 programs, but a 64-long reduction: nothing to split
        ("layer4.1.conv2", 256, 1),
    ],
)
def test_split_k_heuristic_on_an_h100(name, batch, expected):
    layer = _resnet50_layer(name)
    m = batch * layer.P * layer.Q
    reduction = layer.R * layer.S * layer.C // layer.groups
    assert tuning.split_k(m, layer.K, layer.groups, reduction, num_sms=132) == expected


def test_cpu_tensors_are_not_split_by_default():
    assert tuning.num_sms(torch.device("cpu")) == 0
    assert tuning.split_k(1, 64, 1, 4608, num_sms=0) == 1


# --- stream-K (conv_bn_act_kernel, STREAM_K) ------------------------------------------------------

# The interpreter's tile as a stream-K candidate; the interpreter never takes stream-K on its own.
SK_SPEC = (32, 32, 16, 4, 1)

STREAM_K_CASES = {
    # M = 50, K = 40: 2 x 2 tiles of 32x32, each 9 taps x 2 channel slices = 18 iterations.
    "3x3_tap_aligned": (Case(2, 32, 40, 5, 5, 3, 3, padding=1), torch.float16),
    # C = 20: the flat (r, s, c) walk, 12 iterations; M = 32: a single tile.
    "3x3_s2_flat": (Case(2, 20, 24, 7, 7, 3, 3, stride=2, padding=1), torch.float32),
    # The stem's ROW_RUN walk: 7 rows of RUN = 32, 14 iterations; M = 36: 2 tiles.
    "stem_row_run": (Case(1, 3, 16, 12, 12, 7, 7, stride=2, padding=3), torch.bfloat16),
    # The plain-GEMM walk by pointers: M = 126, K = 72: 4 x 3 tiles of 4 iterations.
    "1x1_gemm": (Case(2, 64, 72, 7, 9, 1, 1), torch.float16),
    # Two unmerged groups, each its own programs, partial tiles and flags.
    "groups2_unmerged": (Case(1, 96, 96, 3, 3, 3, 3, padding=1, groups=2), torch.float16),
}


def _programs_per_tile(kwargs, programs) -> list:
    """How many programs work on each output tile of one group when `programs` share its
    iterations in ceil(total / programs) ranges, as the kernel deals them (tile-major)."""
    iters = tuning.reduction_iters(kwargs, kwargs["BLOCK_K"])
    tiles = _tiles(kwargs, (kwargs["BLOCK_M"], kwargs["BLOCK_N"]))
    per_program = tuning.cdiv(tiles * iters, programs)
    return [(t * iters + iters - 1) // per_program - t * iters // per_program + 1 for t in range(tiles)]


STREAM_K_PROGRAMS = [1, 2, 3, 5, 13, 200]


@pytest.mark.parametrize("name", list(STREAM_K_CASES))
def test_the_stream_k_cases_share_tiles(name):
    """Over STREAM_K_PROGRAMS each case has a launch where some tile is shared by three or more
    programs (a middle one's whole range inside the tile) and one where some program has no
    iterations: test_stream_k reaches the partial-tile path, not only whole tiles per program."""
    from resnet_kernels.triton.conv import kernel_args

    case, dtype = STREAM_K_CASES[name]
    x, w, sc, sh = _inputs(case, dtype, torch.Generator().manual_seed(0))
    kwargs, groups = kernel_args(x, w, sc, sh, None, *case.conv, True, None, None, 1)
    kwargs.update(zip(("BLOCK_M", "BLOCK_N", "BLOCK_K"), SK_SPEC))
    iters = tuning.reduction_iters(kwargs, SK_SPEC[2]) * _tiles(kwargs, SK_SPEC)
    per_group = [max(1, programs // groups) for programs in STREAM_K_PROGRAMS]
    assert max(max(_programs_per_tile(kwargs, n)) for n in per_group) >= 3
    assert max(per_group) > iters


@pytest.mark.parametrize("programs", STREAM_K_PROGRAMS)
@pytest.mark.parametrize("name", list(STREAM_K_CASES))
def test_stream_k(name, programs, gen, monkeypatch):
    """The stream-K candidate forced on with 1 to 200 programs: tiles whose iterations two or more
    programs share (their partials added by the program with the tile's last iteration), ranges
    that start and end inside one tile, programs left without iterations (200), each walk of the
    reduction and each group with its own programs. Every output element written once and right,
    the flags all back at 0, the same bits from a second launch."""
    force_triton_config(monkeypatch, SK_SPEC, stream_k=True)
    monkeypatch.setattr(tuning, "_INTERPRETER_PROGRAMS", programs)
    launches = triton_launches(monkeypatch)
    case, dtype = STREAM_K_CASES[name]
    x, w, sc, sh = _inputs(case, dtype, gen)
    res = _randn(gen, case.n, case.k, *case.out_hw, dtype=dtype, channels_last=True)
    y = _check(case, x, w, sc, sh, res)
    kwargs = launches[0]
    assert kwargs["STREAM_K_OK"] and kwargs["STREAM_K"] and not kwargs["TMA"] and not kwargs["PERSISTENT"]
    per_group, groups, splits = kwargs["grid"](kwargs)
    assert (per_group, splits) == (max(1, programs // groups), 1)
    assert not kwargs["flags_ptr"].any(), "a flag was left set: the next launch would take stale partials"
    again = conv_bn_act(x, w, sc, sh, res, *case.conv, True, None, None, 1)
    assert torch.equal(y, again), "partials are added in program order: the same inputs give the same bits"


@pytest.mark.parametrize("programs", [4, 7])
def test_stream_k_with_option_a_residual_and_prologue(programs, gen, monkeypatch):
    """Stream-K under the pre-activation prologue (input BN + ReLU, padding after it) and the
    option-A residual: the epilogue the owner of a shared tile runs is the full one."""
    force_triton_config(monkeypatch, SK_SPEC, stream_k=True)
    monkeypatch.setattr(tuning, "_INTERPRETER_PROGRAMS", programs)
    launches = triton_launches(monkeypatch)
    case = Case(2, 32, 48, 6, 6, 3, 3, padding=1)
    x, w, sc, sh = _inputs(case, torch.float16, gen)
    res = _randn(gen, case.n, case.k // 2, 2 * case.out_hw[0], 2 * case.out_hw[1], dtype=torch.float16)
    in_scale, in_shift = _positive(gen, case.c), torch.randn(case.c, generator=gen)
    _check(case, x, w, sc, sh, res, in_scale=in_scale, in_shift=in_shift, residual_stride=2)
    assert launches[0]["STREAM_K"] and max(_programs_per_tile(launches[0], programs)) > 1


@pytest.mark.parametrize("what", ["split_k", "switched_off"])
def test_stream_k_is_not_taken_where_it_must_not_be(what, gen, monkeypatch):
    """With the stream-K candidate forced on: a split reduction runs the one-tile walk with its split
    epilogue (the two do not combine), and RESNET_KERNELS_TRITON_STREAM_K=0 turns stream-K off."""
    force_triton_config(monkeypatch, SK_SPEC, stream_k=True)
    if what == "switched_off":
        monkeypatch.setenv(tuning.STREAM_K_ENV, "0")
    launches = triton_launches(monkeypatch)
    case, dtype = STREAM_K_CASES["3x3_tap_aligned"]
    split = 2 if what == "split_k" else None
    _check(case, *_inputs(case, dtype, gen), split_k=split)
    kwargs = launches[0]
    assert not kwargs["STREAM_K_OK"] and not kwargs["STREAM_K"]
    assert isinstance(kwargs["flags_ptr"], torch.Tensor) and kwargs["flags_ptr"].dtype == dtype  # x: unused
    assert kwargs["grid"](kwargs) == (_tiles(kwargs, SK_SPEC), 1, split or 1)


@triton.jit
def _hand_over_probe(ws_ptr, flags_ptr, out_ptr, PUBLISH: tl.constexpr, SPIN_LIMIT: tl.constexpr):
    """Program 0 publishes a tile of 2s into slot 0 if PUBLISH; program 1 adds slot 0 to its own
    tile of 1s (taking the flag) and stores the sum."""
    acc = tl.full((16, 16), 1.0, tl.float32)
    if tl.program_id(0) == 0:
        if PUBLISH:
            _stream_k_publish(acc * 2, ws_ptr, flags_ptr, tl.program_id(0))
    else:
        acc = _stream_k_collect(acc, ws_ptr, flags_ptr, 0, tl.program_id(0), SPIN_LIMIT)
        tl.store(out_ptr + tl.arange(0, 16)[:, None] * 16 + tl.arange(0, 16)[None, :], acc)


@pytest.mark.parametrize("publish", [True, False])
def test_stream_k_hand_over(publish):
    """A published partial is added and its flag taken back to 0; a flag that never comes (a broken
    hand-over) ends the wait after SPIN_LIMIT tries with a NaN tile instead of a hang."""
    ws = torch.full((2, 16 * 16), -7.0)
    flags = torch.zeros(2, dtype=torch.int32)
    out = torch.zeros(16 * 16)
    _hand_over_probe[(2,)](ws, flags, out, publish, 4)
    if publish:
        assert torch.equal(out, torch.full_like(out, 3.0)) and not flags.any()
    else:
        assert torch.isnan(out).all()


@triton.jit
def _reduction_iters_probe(out_ptr, C, R: tl.constexpr, S: tl.constexpr, RUN: tl.constexpr,
                           BLOCK_K: tl.constexpr, ROW_RUN: tl.constexpr, FLAT_K: tl.constexpr):
    tl.store(out_ptr, _reduction_iters(C, R, S, RUN, BLOCK_K, False, ROW_RUN, FLAT_K))


@pytest.mark.parametrize("c,r,s,run,block_k", [(3, 7, 7, 32, 16), (3, 7, 7, 32, 64), (20, 3, 3, 1, 16),
                                               (64, 3, 3, 1, 16), (512, 3, 3, 1, 64), (256, 1, 1, 1, 64),
                                               (16, 3, 3, 1, 32)])
def test_host_and_kernel_count_the_same_reduction_iterations(c, r, s, run, block_k):
    """tuning.reduction_iters (the host's, for stream-K's worth) equals the kernel's _reduction_iters
    on each pointer walk: ROW_RUN, flat (BLOCK_K not dividing C) and tap-aligned."""
    row_run = run > 1
    out = torch.zeros(1, dtype=torch.int32)
    _reduction_iters_probe[(1,)](out, c, r, s, run, block_k, row_run, c % block_k != 0 and not row_run)
    args = {"C": c, "R": r, "S": s, "RUN": run, "ROW_RUN": row_run}
    assert tuning.reduction_iters(args, block_k) == out.item()


def _fake_call(layer, batch, device, dtype=torch.float16):
    """The fields of a launch's arguments stream_k_pays reads, for a ResNet layer at `batch`."""
    from types import SimpleNamespace

    x = SimpleNamespace(device=device, shape=(batch, layer.C, layer.H, layer.W), dtype=dtype)
    return {"x_ptr": x, "M": batch * layer.P * layer.Q, "K": layer.K // layer.groups,
            "C": layer.C // layer.groups, "R": layer.R, "S": layer.S, "RUN": 1, "ROW_RUN": False, "SPLIT_K": 1}


@pytest.mark.parametrize(
    "name,batch,expected",
    [
        ("layer4.1.conv2", 32, True),  # 13 x 4 = 52 tiles of 128x128 on 132 SMs: 39% busy
        ("layer3.1.conv2", 32, True),  # 49 x 2 = 98 tiles: 74%
        ("layer4.0.conv3", 32, True),  # 13 x 16 = 208 tiles: 2 waves, the second 58% full
        ("layer4.1.conv2", 256, False),  # 98 x 4 = 392 tiles: 3 waves, 99% busy
        ("layer1.0.conv1", 32, False),  # 784 tiles: 6 waves, 99%
    ],
)
def test_stream_k_is_offered_on_ragged_grids_of_an_h100(name, batch, expected, monkeypatch):
    default_triton_switches(monkeypatch)
    monkeypatch.setattr(tuning, "interpreting", lambda: False)  # a GPU run, where the worth decides
    gpu = torch.device("cuda", 0)
    monkeypatch.setitem(tuning._sm_counts, gpu, 132)
    args = _fake_call(_resnet50_layer(name), batch, gpu)
    assert tuning.stream_k_pays((128, 128, 64), args) == expected
    assert tuning.stream_k_allowed(args) == expected
    fp32 = _fake_call(_resnet50_layer(name), batch, gpu, torch.float32)
    assert not tuning.stream_k_allowed(fp32)  # its stream-K tiles spill on sm_90
    assert not tuning.stream_k_allowed({**args, "SPLIT_K": 2})
    monkeypatch.setenv(tuning.STREAM_K_ENV, "0")
    assert not tuning.stream_k_allowed(args)


def test_stream_k_needs_iterations_for_every_program(monkeypatch):
    """A ragged grid whose whole reduction would give the programs under _MIN_SPLIT_ITERS
    iterations each is not offered stream-K (layer4.1.conv1 at batch 2: 1 x 4 tiles of 32 steps,
    128 iterations for 132 programs)."""
    gpu = torch.device("cuda", 0)
    monkeypatch.setitem(tuning._sm_counts, gpu, 132)
    assert not tuning.stream_k_pays((128, 128, 64), _fake_call(_resnet50_layer("layer4.1.conv1"), 2, gpu))
    assert not tuning.stream_k_pays((128, 128, 64), _fake_call(_resnet50_layer("layer4.1.conv2"), 32,
                                                               torch.device("cpu")))


def test_stream_k_programs(monkeypatch):
    """One program per SM (two for tiles of at most 128x64), split among the groups, at least one,
    not capped by the tiles; the interpreter's fixed few on the CPU."""
    gpu = torch.device("cuda", 0)
    monkeypatch.setitem(tuning._sm_counts, gpu, 132)
    assert tuning.stream_k_programs(1, 128, 128, gpu) == 132
    assert tuning.stream_k_programs(1, 128, 64, gpu) == 264
    assert tuning.stream_k_programs(2, 128, 128, gpu) == 66
    assert tuning.stream_k_programs(200, 128, 128, gpu) == 1
    assert tuning.stream_k_programs(1, 128, 128, torch.device("cpu")) == tuning._INTERPRETER_PROGRAMS


def test_a_stream_k_candidate_is_not_a_tma_one():
    with pytest.raises(ValueError, match="stream-K candidate loads by pointers"):
        tuning._config(SK_SPEC, tma=True, stream_k=True)


# --- memory formats ---------------------------------------------------------------------------


def _sliced(gen, dtype, shape):
    """A non-contiguous view: every other channel and column of a larger tensor."""
    n, c, h, w = shape
    return _randn(gen, n, 2 * c, h + 1, 2 * w, dtype=dtype)[:, ::2, 1:, ::2]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
@pytest.mark.parametrize("name", ["3x3_s2_p1", "1x1_s1_gemm", "7x7_s2_p3_stem_c3"])
def test_layouts(layout, name, gen):
    case, dtype = GEOMETRY[name]
    x, w, sc, sh = _inputs(case, dtype, gen, channels_last=layout == "channels_last")
    if layout == "sliced":
        x = _sliced(gen, dtype, x.shape)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    res = _randn(gen, case.n, case.k, *case.out_hw, dtype=dtype)
    expected = _check(case, x, w, sc, sh, res)
    y = conv_bn_act(x, w, sc, sh, res, *case.conv, True, None, None, 1)  # the backend allocates
    want = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=want)
    assert torch.equal(y, expected)


# --- the public API ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_public_api(dtype, gen):
    case = Case(2, 16, 32, 6, 6, 3, 3, stride=2, padding=1)
    x, w, _, _ = _inputs(case, dtype, gen)
    bn = torch.nn.BatchNorm2d(case.k).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(case.k, generator=gen))
        bn.running_var.copy_(torch.rand(case.k, generator=gen) + 0.5)
    scale, shift = resnet_kernels.fold_bn(bn)
    res = _randn(gen, 2, 16, 6, 6, dtype=dtype, channels_last=True)  # option A: half the channels, stride 2
    kwargs = dict(stride=2, padding=1, residual_stride=2)
    y = resnet_kernels.functional.conv_bn_act(x, w, scale, shift, res, backend="triton", **kwargs)
    ref = resnet_kernels.functional.conv_bn_act(
        x.double(), w.double(), scale.double(), shift.double(), res.double(), backend="reference", **kwargs
    )
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    assert rel_error(y, ref) <= REL_TOL[dtype]


# --- weight packing and its cache -----------------------------------------------------------


def test_pack_is_a_block_diagonal_grouped_weight(gen):
    """A merged packed weight, unpacked as a dense (per merged group) conv weight, is the grouped conv."""
    groups, merge = 8, 4
    x = torch.randn(1, 16, 5, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(24, 2, 3, 3, generator=gen, dtype=torch.float64)
    packed = weights.pack(w, groups, merge)  # (G/merge, R, S, C', K')
    assert packed.shape == (2, 3, 3, 8, 12)
    dense = packed.permute(0, 4, 3, 1, 2).reshape(24, 8, 3, 3)  # (K, C', R, S) for groups // merge groups
    torch.testing.assert_close(F.conv2d(x, dense, groups=2), F.conv2d(x, w, groups=groups))


@pytest.mark.parametrize("groups,c,k,expected", [(1, 64, 64, 1), (32, 4, 4, 16), (32, 32, 32, 2), (64, 4, 8, 8),
                                                 (96, 1, 1, 48), (7, 16, 16, 1), (2, 48, 48, 1)])
def test_merge_factor(groups, c, k, expected):
    assert weights.merge_factor(groups, c, k) == expected


def _counting_pack(monkeypatch):
    calls = []
    real = weights.pack

    def pack(*args):
        calls.append(tuple(args[0].shape))  # not the weight itself: the test frees it
        return real(*args)

    monkeypatch.setattr(weights, "pack", pack)
    return calls


def test_weight_cache_repacks_only_new_versions(monkeypatch, gen):
    calls = _counting_pack(monkeypatch)
    case = Case(1, 8, 16, 4, 4, 1, 1)
    x, w, sc, sh = _inputs(case, torch.float32, gen)
    _check(case, x, w, sc, sh)
    _check(case, x, w, sc, sh)
    assert len(calls) == 1
    w.mul_(-1.5)  # an in-place update bumps the version counter: the packed copy is stale
    _check(case, x, w, sc, sh)
    assert len(calls) == 2
    entries = len(weights._packed)
    del w
    gc.collect()
    assert len(weights._packed) == entries - 1  # a freed weight leaves the cache


def test_weight_cache_through_the_public_api(monkeypatch, gen):
    calls = _counting_pack(monkeypatch)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = _randn(gen, 1, 8, 4, 4, channels_last=True)
    with torch.no_grad():
        first = resnet_kernels.functional.conv_bn_act(x, conv.weight, padding=1, backend="triton")
        second = resnet_kernels.functional.conv_bn_act(x, conv.weight, padding=1, backend="triton")
    assert len(calls) == 1
    assert torch.equal(first, second)


# --- 64-bit index arithmetic -----------------------------------------------------------------


@triton.jit
def _index_probe(out_ptr, pid_m, M, P, Q, s_img, s_h, s_w, BLOCK_M: tl.constexpr):
    """Stores the kernel's pixel decomposition and row offsets for tile pid_m."""
    offs_m, img, p, q, mask = _output_pixels(pid_m, M, P, Q, BLOCK_M)
    i = tl.arange(0, BLOCK_M)
    tl.store(out_ptr + i, offs_m)
    tl.store(out_ptr + BLOCK_M + i, img)
    tl.store(out_ptr + 2 * BLOCK_M + i, p * Q + q)
    tl.store(out_ptr + 3 * BLOCK_M + i, _pixel_rows(img, p, q, s_img, s_h, s_w))
    tl.store(out_ptr + 4 * BLOCK_M + i, mask.to(tl.int64))


def test_pixel_indices_do_not_overflow_int32():
    """A tile past pixel 2^32 with a 2^21-element image stride: every product exceeds int32."""
    block, pid, P, Q = 16, 2**28 - 1, 7, 7
    M, s_img, s_h, s_w = pid * block + 5, 2**21 + 3, 7 * 64, 64
    out = torch.empty(5 * block, dtype=torch.int64, device="cuda" if HAS_CUDA else "cpu")
    _index_probe[(1,)](out, pid, M, P, Q, s_img, s_h, s_w, BLOCK_M=block)
    m = [pid * block + i for i in range(block)]
    img, pq = [v // (P * Q) for v in m], [v % (P * Q) for v in m]
    rows = [n * s_img + (t // Q) * s_h + (t % Q) * s_w for n, t in zip(img, pq)]
    expected = m + img + pq + rows + [int(v < M) for v in m]
    assert max(rows) > 2**40
    assert out.tolist() == expected


# --- argument errors of the backend's own parameters ------------------------------------------


def test_out_is_checked(gen):
    case = Case(1, 8, 16, 4, 4, 1, 1)
    x, w, sc, sh = _inputs(case, torch.float32, gen)
    args = (x, w, sc, sh, None, *case.conv, True, None, None, 1)
    with pytest.raises(ValueError, match="out must have shape"):
        conv_bn_act(*args, out=torch.empty(1, 16, 4, 5))
    with pytest.raises(TypeError, match="out must be torch.float32"):
        conv_bn_act(*args, out=torch.empty(1, 16, 4, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="out must be contiguous or channels_last"):
        conv_bn_act(*args, out=torch.empty(1, 16, 4, 8)[..., ::2])


def test_too_many_groups_names_groups():
    groups = 65537  # prime: no merging possible
    x = torch.ones(1, groups, 1, 1)
    w = torch.ones(groups, 1, 1, 1)
    with pytest.raises(ValueError, match="groups=65537"):
        conv_bn_act(x, w, None, None, None, (1, 1), (0, 0), (1, 1), groups, False, None, None, 1)


# --- GPU: every distinct conv layer of the ImageNet ResNets -------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("layer", distinct_layers(), ids=lambda layer: layer.name)
def test_resnet_layer_on_gpu(layer, batch, dtype, gen):
    _check_layer_on_gpu(layer, batch, dtype, gen)


# Every Hopper autotune candidate (not only the one an untuned run takes) on the
# layer kinds whose code differs: the stem (ROW_RUN), a 1x1 with residual (GEMM
# path, epilogue halves on the wide tiles), a strided 3x3 and a 7x7-map 3x3.
CANDIDATE_LAYERS = ["conv1", "layer1.0.conv3", "layer2.0.conv2", "layer4.1.conv2"]


def _spec_id(spec):
    return "x".join(map(str, spec[:3])) + f"-w{spec[3]}-s{spec[4]}"


@needs_cuda
@pytest.mark.parametrize("spec", tuning._HOPPER, ids=_spec_id)
@pytest.mark.parametrize("name", CANDIDATE_LAYERS)
def test_every_hopper_candidate_on_gpu(name, spec, gen, monkeypatch):
    force_triton_config(monkeypatch, spec)
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    _check_layer_on_gpu(layer, 32, torch.float16, gen)


# The TMA candidates on 1x1 layers: with a residual, the long reduction of layer4, and (bf16) a
# 7x7 map where M = 32*49 = 1568 ends mid-tile for every BLOCK_M.
TMA_LAYERS = [("layer1.0.conv3", torch.float16), ("layer4.1.conv1", torch.float16), ("layer4.0.conv3", torch.bfloat16)]


@needs_cuda
@pytest.mark.parametrize("spec", tuning._HOPPER_TMA, ids=_spec_id)
@pytest.mark.parametrize("name,dtype", TMA_LAYERS, ids=[n for n, _ in TMA_LAYERS])
def test_every_tma_candidate_on_gpu(name, dtype, spec, gen, monkeypatch):
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("TMA needs compute capability 9.0 or more")
    force_triton_config(monkeypatch, spec, tma=True)
    launches = triton_launches(monkeypatch)
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    _check_layer_on_gpu(layer, 32, dtype, gen)
    assert launches[0]["TMA"], "the TMA candidate ran the pointer walk"


@needs_cuda
@pytest.mark.parametrize("spec", tuning._HOPPER_PERSISTENT, ids=_spec_id)
@pytest.mark.parametrize("name,dtype", TMA_LAYERS, ids=[n for n, _ in TMA_LAYERS])
@pytest.mark.parametrize("batch", [32, 256])
def test_every_persistent_candidate_on_gpu(name, dtype, spec, batch, gen, monkeypatch):
    """Each persistent tile on the TMA layers; batch 256 gives every program many tiles (layer1:
    6,272 tiles of 128x128 for 132 programs), batch 32 a ragged last round."""
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("TMA needs compute capability 9.0 or more")
    force_triton_config(monkeypatch, spec, persistent=True)
    launches = triton_launches(monkeypatch)
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    _check_layer_on_gpu(layer, batch, dtype, gen)
    assert launches[0]["PERSISTENT"], "the persistent candidate ran another walk"


# Stream-K candidates on the ragged grids they are offered for at batch 32 (test above: the 7x7
# 3x3 with 52 tiles of 128x128, the 14x14 3x3 in bf16 with 98, a 1x1 with residual with 208).
STREAM_K_LAYERS = [("layer4.1.conv2", torch.float16), ("layer3.1.conv2", torch.bfloat16),
                   ("layer4.0.conv3", torch.float16)]


@needs_cuda
@pytest.mark.parametrize("spec", tuning._HOPPER_STREAM_K, ids=_spec_id)
@pytest.mark.parametrize("name,dtype", STREAM_K_LAYERS, ids=[n for n, _ in STREAM_K_LAYERS])
def test_every_stream_k_candidate_on_gpu(name, dtype, spec, gen, monkeypatch):
    """Each stream-K tile with one program per SM slot: tiles shared by two programs, the partials
    handed over through flags between programs running at the same time; within twice cuDNN's
    error, the flags back at 0, and bitwise the same output from a second launch."""
    force_triton_config(monkeypatch, spec, stream_k=True)
    launches = triton_launches(monkeypatch)
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    y, args = _check_layer_on_gpu(layer, 32, dtype, gen)
    kwargs = launches[0]
    assert kwargs["STREAM_K"], "the stream-K candidate ran another walk"
    assert not kwargs["flags_ptr"].any(), "a flag was left set: the next launch would take stale partials"
    assert torch.equal(y, conv_bn_act(*args)), "partials are added in program order: the same bits again"


def _check_layer_on_gpu(layer, batch, dtype, gen):
    dev = "cuda"
    x = _randn(gen, batch, layer.C, layer.H, layer.W, dtype=dtype, channels_last=True, device=dev)
    fan_in = layer.C // layer.groups * layer.R * layer.S
    w = (torch.randn(layer.K, layer.C // layer.groups, layer.R, layer.S, generator=gen) / math.sqrt(fan_in))
    w = w.to(dev, dtype)
    sc, sh = _positive(gen, layer.K, dev), torch.randn(layer.K, generator=gen).to(dev)
    res = None
    if layer.has_residual:
        res = _randn(gen, batch, layer.K, layer.P, layer.Q, dtype=dtype, channels_last=True, device=dev)
    conv = ((layer.stride,) * 2, (layer.padding,) * 2, (1, 1), layer.groups)
    args = (x, w, sc, sh, res, *conv, layer.relu, None, None, 1)
    out = _poisoned((batch, layer.K, layer.P, layer.Q), dtype, torch.channels_last, dev)
    y = conv_bn_act(*args, out=out)
    torch.cuda.synchronize()
    assert not torch.isnan(y).any(), "the kernel left elements of the output unwritten"
    ref = oracle(*args)
    assert_within_cudnn_error(y, x, w, sc, sh, res, layer, ref)
    return y, args

