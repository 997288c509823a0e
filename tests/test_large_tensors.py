"""Tensors of more than 2^31 elements through both backends (GPU), and the same harness on small
tensors under the interpreter (CPU), so that the harness itself is tested in CI.

A 32-bit offset wraps past element 2^31: a wrapped read takes another pixel's data, a wrapped
write lands near the start of the tensor and leaves its real place unwritten. So each case runs
into NaN-poisoned memory (nothing left unwritten), then checks against the float64 oracle the
output rows of image 0 (where a wrapped write would land), the rows around the element where
the input and the output pass 2^31, and the last rows of the last image. The oracle runs on a
crop of the input rows those outputs read, so it costs milliseconds while the tensors are 4 GiB
each (about 13 GiB of GPU memory a case, freed after it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from conftest import HAS_CUDA, IS_SM90, needs_cuda, needs_extension
from helpers import (
    REL_TOL,
    force_triton_config,
    into_poisoned_memory,
    oracle,
    rel_error,
    triton_into_poisoned_output,
    triton_launches,
)

from resnet_kernels.triton import tuning

BOUNDARY = 2**31
BAND = 4  # output rows checked on each side of a boundary


@dataclass(frozen=True)
class Shape:
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    stride: int
    padding: int
    residual: bool = False
    prologue: bool = False

    @property
    def out_hw(self):
        p = (self.h + 2 * self.padding - self.r) // self.stride + 1
        return p, (self.w + 2 * self.padding - self.r) // self.stride + 1


# 8 x 64 x 2048 x 2056 = 2,155,872,256 elements (2^31 + 8,388,608): the input of every case
# passes 2^31 in image 7, row ~1985; so do the output and residual of the stride-1 cases.
LARGE = {
    # the plain-GEMM walk (pointer or TMA) and a residual of the output's size
    "gemm_residual": Shape(8, 64, 2048, 2056, 64, 1, 1, 0, residual=True),
    # the tap walk with padding and the pre-activation prologue
    "conv3x3_prologue": Shape(8, 64, 2048, 2056, 64, 3, 1, 1, prologue=True),
    # a strided 1x1 (downsample): a large input, an output of 2^30 elements
    "conv1x1_stride2": Shape(8, 64, 2048, 2056, 128, 1, 2, 0),
}

# The same cases scaled down for the interpreter; the "boundary" is then the middle element.
SMALL = {
    "gemm_residual": Shape(3, 16, 10, 9, 16, 1, 1, 0, residual=True),
    "conv3x3_prologue": Shape(3, 16, 10, 9, 16, 3, 1, 1, prologue=True),
    "conv1x1_stride2": Shape(3, 16, 10, 9, 32, 1, 2, 0),
}


def _nhwc_randn(gen, n, c, h, w, device, dtype):
    """Random (n, c, h, w) in channels_last memory, drawn on `device` (a 2^31-element draw on the
    host would take tens of seconds and 8 GiB of fp32)."""
    return torch.randn(n, h, w, c, generator=gen, device=device, dtype=dtype).permute(0, 3, 1, 2)


def _args(shape: Shape, gen, device, dtype=torch.float16):
    """The op's positional arguments for `shape`: channels_last x (and residual), KRSC weights."""
    s = shape
    x = _nhwc_randn(gen, s.n, s.c, s.h, s.w, device, dtype)
    w = (_nhwc_randn(gen, s.k, s.c, s.r, s.r, device, torch.float32) / math.sqrt(s.c * s.r * s.r)).to(dtype)
    vec = lambda n, lo: torch.rand(n, generator=gen, device=device) + lo  # noqa: E731
    res = _nhwc_randn(gen, s.n, s.k, *s.out_hw, device, dtype) if s.residual else None
    in_scale, in_shift = (vec(s.c, 0.5), vec(s.c, -0.5)) if s.prologue else (None, None)
    return (x, w, vec(s.k, 0.5), vec(s.k, -0.5), res, [s.stride] * 2, [s.padding] * 2, [1, 1], 1, True,
            in_scale, in_shift, 1)


def _expected_rows(args, img: int, p0: int, p1: int) -> torch.Tensor:
    """The float64 oracle's output rows [p0, p1) of image `img`, computed on the input rows
    [c0, c1) they read. c0 is a multiple of the stride at least `padding` rows above the first
    read (or 0), and c1 a row past the last read (or H): the oracle's own zero padding of the
    crop then touches no kept row unless the image itself has padding there."""
    x, w, sc, sh, res, stride, padding, dilation, groups, relu, in_scale, in_shift, res_stride = args
    s, pad, r, h = stride[0], padding[0], w.shape[2], x.shape[2]
    j = max(p0 - pad, 0)  # crop output row i is image output row j + i
    c0, c1 = j * s, min(h, (p1 - 1) * s + r)
    rows_out = (c1 - c0 + 2 * pad - r) // s + 1  # the crop's output rows: image rows [j, j + rows_out)
    res_rows = None if res is None else res[img : img + 1, :, j : j + rows_out]
    y = oracle(x[img : img + 1, :, c0:c1], w, sc, sh, res_rows, stride, padding, dilation, groups, relu,
               in_scale, in_shift, res_stride)
    return y[0, :, p0 - j : p1 - j]


def _row_of_element(t: torch.Tensor, element: int) -> tuple:
    """(image, row) of the NHWC tensor t's element at memory offset `element`."""
    n, c, h, w = t.shape
    return element // (c * h * w), element % (c * h * w) // (c * w)


def _bands(y: torch.Tensor, x: torch.Tensor, boundary: int):
    """(image, first row, end row) of the output rows to check: image 0's first rows, the rows
    around the output's and the input's `boundary` element, the last image's last rows."""
    n, _, p, _ = y.shape
    bands = [(0, 0, min(BAND, p)), (n - 1, max(p - BAND, 0), p)]
    for t in (y, x):
        if t.numel() > boundary:
            img, row = _row_of_element(t, boundary)
            row = row * p // t.shape[2]  # an input row -> the output row near it
            bands.append((img, max(row - BAND, 0), min(row + BAND, p)))
    return bands


def _check(y: torch.Tensor, args, boundary: int):
    assert not torch.isnan(y).any(), "the kernel left elements of the output unwritten"
    for img, p0, p1 in _bands(y, args[0], boundary):
        ref = _expected_rows(args, img, p0, p1)
        err = rel_error(y[img, :, p0:p1], ref)
        assert err <= REL_TOL[y.dtype], f"image {img}, output rows [{p0}, {p1}): error {err:.3g}"


# --- CPU: the harness on small tensors, through the Triton interpreter --------------------------


@pytest.mark.parametrize("shape", [*SMALL.values(), Shape(2, 8, 11, 9, 8, 3, 2, 1), Shape(2, 8, 13, 9, 8, 7, 2, 3)])
def test_cropped_rows_equal_the_full_oracle(shape):
    """_expected_rows on every row range of image 1 equals the oracle on the whole tensor (up to
    float64 summation order: the crop's conv may take another algorithm)."""
    args = _args(shape, torch.Generator().manual_seed(shape.r), "cpu")
    full = oracle(*args)
    rows = full.shape[2]
    for p0 in range(rows):
        for p1 in range(p0 + 1, rows + 1):
            torch.testing.assert_close(_expected_rows(args, 1, p0, p1), full[1, :, p0:p1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", SMALL)
def test_harness_on_small_tensors(name):
    args = _args(SMALL[name], torch.Generator().manual_seed(len(name)), "cpu")
    y = triton_into_poisoned_output(args)
    boundary = args[0].numel() // 2
    assert len(_bands(y, args[0], boundary)) >= 3, "the boundary band of the input is missing"
    _check(y, args, boundary)


def test_harness_finds_a_wrong_row():
    """A single wrong output row inside a band fails the check (so the check can fail)."""
    args = _args(SMALL["conv3x3_prologue"], torch.Generator().manual_seed(3), "cpu")
    y = triton_into_poisoned_output(args)
    y[-1, :, -1] = y[-1, :, -2]  # the last row of the last image: a row read from its neighbour
    with pytest.raises(AssertionError, match="image 2"):
        _check(y, args, args[0].numel() // 2)


# --- GPU: over 2^31 elements -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _release_gpu_memory():
    """Hand the ~13 GiB of a large case back to the driver, not to the next test's allocator."""
    yield
    if HAS_CUDA:
        torch.cuda.empty_cache()


def _large_args(name):
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * 2**30:
        pytest.skip(f"needs 16 GiB of free GPU memory, {free / 2**30:.1f} GiB free")
    return _args(LARGE[name], torch.Generator(device="cuda").manual_seed(len(name)), "cuda")


@needs_cuda
@pytest.mark.parametrize("name", LARGE)
def test_triton_over_2_31_elements(name):
    args = _large_args(name)
    assert args[0].numel() > BOUNDARY
    _check(triton_into_poisoned_output(args), args, BOUNDARY)


@needs_cuda
@pytest.mark.parametrize("schedule", ["tma", "persistent"])
def test_triton_tma_over_2_31_elements(schedule, monkeypatch):
    """The TMA walks address x as an (M, C) matrix: M = 33.7M rows fits their int32 coordinates,
    the 2.2G elements do not fit int32 offsets."""
    if not IS_SM90:
        pytest.skip("the TMA walks run on compute capability 9.0 here (H100/H200)")
    spec = (tuning._HOPPER_TMA if schedule == "tma" else tuning._HOPPER_PERSISTENT)[0]
    force_triton_config(monkeypatch, spec, tma=True, persistent=schedule == "persistent")
    launches = triton_launches(monkeypatch)
    args = _large_args("gemm_residual")
    _check(triton_into_poisoned_output(args), args, BOUNDARY)
    assert launches[0]["TMA"] and bool(launches[0]["PERSISTENT"]) == (schedule == "persistent")


@needs_cuda
@needs_extension
@pytest.mark.parametrize("kernel", ["default", "wgmma"])
@pytest.mark.parametrize("name", LARGE)
def test_cuda_over_2_31_elements(name, kernel, monkeypatch):
    if kernel == "wgmma":
        if not IS_SM90:
            pytest.skip("the wgmma kernel needs a compute capability 9.0 GPU (H100/H200)")
        monkeypatch.setenv("RESNET_KERNELS_CUDA_KERNEL", "wgmma")
    args = _large_args(name)
    shape = LARGE[name]
    y = into_poisoned_memory(torch.ops.resnet_kernels.conv_bn_act_cuda, args, (shape.n, shape.k, *shape.out_hw))
    _check(y, args, BOUNDARY)
