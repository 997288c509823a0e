"""The Hopper wgmma kernels of the CUDA extension (csrc/kernels/wgmma_conv.cuh, and the
persistent wgmma_ws_conv.cuh where the plan takes it) against the float64 reference, and their
selection by RESNET_KERNELS_CUDA_KERNEL (GPU only).

The variable is read by the C++ launcher on every call, so each test sets it
with monkeypatch. "wgmma_n64" / "wgmma_n128" / "wgmma_n256" force the kernel and
its tile on every call the tensor-core path takes, which is how the numeric tests
reach it on any shape (the "wgmma" heuristic keeps small grids and memory-bound
gathered calls on the mma.sync kernel). The loads (TMA or cp.async) are the plan's default
here, and so is the kernel: the persistent warp-specialised one where both operands and the
epilogue tensors move by TMA, the one-tile-per-CTA one elsewhere (tests/test_cuda_wgmma_tma.py
and tests/test_cuda_wgmma_ws.py pin each). Every numeric test also checks, through the profiler's
kernel names, that a wgmma kernel with the requested tile is what ran: a build without
sm_90a code, or a selection bug, fails here instead of silently testing the
mma.sync kernel again.

Outputs land in NaN-poisoned memory (helpers.into_poisoned_memory), so an
element the kernel forgets to write fails the test. The kernel has the mma.sync
kernel's two epilogues (staged 16-byte stores where 8 | K/groups and the pointers
allow, else paired 32-bit stores); conv_plan reports which one a call takes, and
test_epilogue_paths asserts both as well as the result.
"""

import pytest
import torch
from conftest import IS_SM90, WGMMA_TILES, needs_cuda, needs_extension, needs_sm90
from helpers import (
    REL_TOL,
    assert_within_cudnn_error,
    cuda_randn,
    cuda_vector,
    cuda_weight,
    into_poisoned_memory,
    kernels_run,
    oracle,
    rel_error,
    wgmma_ran,
)

from resnet_kernels import cuda_ops  # loads the extension, registers the fake
from resnet_kernels.layer_shapes import distinct_layers

ENV = "RESNET_KERNELS_CUDA_KERNEL"
DTYPES = [torch.float16, torch.bfloat16]
TILES = WGMMA_TILES  # value -> BN of the tile it forces
CL = torch.channels_last


pytestmark = [needs_cuda, needs_extension]


def _op(*args):
    return torch.ops.resnet_kernels.conv_bn_act_cuda(*args)


def _run_forced(monkeypatch, tile, args, out_shape):
    """The op under RESNET_KERNELS_CUDA_KERNEL=tile into NaN-poisoned memory; asserts the tile ran."""
    monkeypatch.setenv(ENV, tile)
    y, kernels = kernels_run(lambda: into_poisoned_memory(_op, args, out_shape))
    assert wgmma_ran(kernels, TILES[tile]), f"{ENV}={tile} did not run a wgmma kernel with that tile: {kernels}"
    assert not any("implicit_gemm_kernel" in k or "direct_conv_kernel" in k for k in kernels), kernels
    return y


# --- every distinct ResNet-50 layer, both tiles ---------------------------------------------------


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("layer", distinct_layers(("resnet50",)), ids=lambda layer: layer.name)
def test_resnet50_layer(layer, batch, dtype, tile, gen, monkeypatch):
    # The stem's 3 input channels are padded to 8 here, as the cuda backend does
    # (cuda_conv.plan): the raw op would send C=3 to the direct kernel.
    c = -(-layer.C // 8) * 8
    x = cuda_randn(gen, batch, c, layer.H, layer.W, dtype=dtype)
    w = cuda_weight(gen, layer.K, c // layer.groups, layer.R, layer.S, dtype)
    sc, sh = cuda_vector(gen, layer.K, positive=True), cuda_vector(gen, layer.K)
    res = cuda_randn(gen, batch, layer.K, layer.P, layer.Q, dtype=dtype) if layer.has_residual else None
    conv = ([layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups)
    args = (x, w, sc, sh, res, *conv, layer.relu, None, None, 1)
    y = _run_forced(monkeypatch, tile, args, (batch, layer.K, layer.P, layer.Q))
    assert y.is_contiguous(memory_format=CL)
    assert_within_cudnn_error(y, x, w, sc, sh, res, layer, oracle(*args))


# --- contract features on shapes with tails in every dimension ------------------------------------

# name: (N, C, H, W, K, R, S, stride, padding, dilation, groups)
SHAPES = {
    # M = 243 (not a multiple of 128), gemm_k = 648 (10 k tiles of 64 + 8), K = 200 (N tails for both tiles)
    "tails_k200": (3, 72, 9, 9, 200, 3, 3, 1, 1, 1, 1),
    # 2 groups of 136 output channels: group offsets in A, B and y; N tail inside each group
    "groups2_kg136": (2, 32, 7, 7, 272, 3, 3, 2, 1, 1, 2),
    # K = 48: most of every tile's columns are past K; dilation and stride move the taps
    "dilation2_k48": (1, 24, 11, 13, 48, 3, 3, 2, 2, 2, 1),
    # K = 36 (8 does not divide it): the paired 32-bit epilogue; M = 200
    "k36_paired": (2, 32, 10, 10, 36, 3, 3, 1, 1, 1, 1),
}


def _case(name, dtype, gen):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = SHAPES[name]
    x = cuda_randn(gen, n, c, h, w, dtype=dtype)
    wt = cuda_weight(gen, k, c // groups, r, s, dtype)
    p = (h + 2 * padding - dilation * (r - 1) - 1) // stride + 1
    q = (w + 2 * padding - dilation * (s - 1) - 1) // stride + 1
    return x, wt, ([stride] * 2, [padding] * 2, [dilation] * 2, groups), (n, k, p, q)


def _check(monkeypatch, tile, args, out_shape):
    y = _run_forced(monkeypatch, tile, args, out_shape)
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[args[0].dtype], f"relative error {err:.3g} > {REL_TOL[args[0].dtype]:.3g}"


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_residual_through_strides(name, dtype, tile, gen, monkeypatch):
    x, w, conv, out = _case(name, dtype, gen)
    sc, sh = cuda_vector(gen, out[1], positive=True), cuda_vector(gen, out[1])
    res = cuda_randn(gen, *out, dtype=dtype, memory_format=torch.contiguous_format)  # NCHW: strided reads
    _check(monkeypatch, tile, (x, w, sc, sh, res, *conv, True, None, None, 1), out)


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("res_channels,residual_stride,res_format", [(100, 2, CL), (37, 3, torch.contiguous_format)])
def test_option_a_residual(res_channels, residual_stride, res_format, dtype, tile, gen, monkeypatch):
    x, w, conv, out = _case("tails_k200", dtype, gen)
    n, _, p, q = out
    size = p * residual_stride - (residual_stride - 1)  # ceil(size / residual_stride) == p
    res = cuda_randn(gen, n, res_channels, size, size, dtype=dtype, memory_format=res_format)
    _check(monkeypatch, tile, (x, w, None, None, res, *conv, True, None, None, residual_stride), out)


# residual variant -> (vector_output, vector_residual) expected on "tails_k200" (K = 200, 8 | K)
EPILOGUES = {
    "nhwc": (True, True),  # dense channels_last residual: 16-byte loads and stores
    "nchw": (True, False),  # strided residual: scalar loads inside the staged epilogue
    "channel_slice_8": (True, True),  # a channel slice of a wider NHWC tensor, 16 bytes in: still aligned
    "channel_slice_1": (True, False),  # ... 2 bytes in: scalar residual loads
    "option_a_96": (True, True),  # option A, 8 | res_channels: an 8-channel group is wholly in or out
    "option_a_100": (True, False),  # option A, 8 does not divide res_channels: the scalar rule
    "misaligned_scale": (False, False),  # scale 4 bytes past a 16-byte boundary: paired stores
    "no_residual": (True, False),
}


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", list(EPILOGUES))
def test_epilogue_paths(variant, dtype, tile, gen, monkeypatch):
    """The plan's epilogue flags follow the mma.sync kernel's rule (conv_plan.cu), and each
    path is right: M, K and k tails (tails_k200), relu, NaN-poisoned output."""
    x, w, conv, out = _case("tails_k200", dtype, gen)
    n, k, p, q = out
    sc, sh = cuda_vector(gen, k, positive=True), cuda_vector(gen, k)
    res, residual_stride = None, 1
    if variant == "nhwc":
        res = cuda_randn(gen, *out, dtype=dtype)
    elif variant == "nchw":
        res = cuda_randn(gen, *out, dtype=dtype, memory_format=torch.contiguous_format)
    elif variant.startswith("channel_slice"):
        offset = int(variant.rsplit("_", 1)[1])
        res = cuda_randn(gen, n, k + 8, p, q, dtype=dtype)[:, offset:offset + k]
    elif variant.startswith("option_a"):
        residual_stride = 2
        res = cuda_randn(gen, n, int(variant.rsplit("_", 1)[1]), 2 * p - 1, 2 * q - 1, dtype=dtype)
    elif variant == "misaligned_scale":
        sc = cuda_vector(gen, k + 1, positive=True)[1:]
        res = cuda_randn(gen, *out, dtype=dtype)
    args = (x, w, sc, sh, res, *conv, True, None, None, residual_stride)
    monkeypatch.setenv(ENV, tile)
    plan = cuda_ops.conv_plan(*args)
    assert (plan.kernel, plan.tile_m, plan.tile_n, plan.split) == ("wgmma", 128, TILES[tile], 1), plan
    assert (plan.vector_output, plan.vector_residual) == EPILOGUES[variant], plan
    _check(monkeypatch, tile, args, out)


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
def test_paired_path_where_8_does_not_divide_kg(tile, gen, monkeypatch):
    x, w, conv, out = _case("k36_paired", torch.float16, gen)
    args = (x, w, cuda_vector(gen, out[1], positive=True), cuda_vector(gen, out[1]),
            cuda_randn(gen, *out, dtype=torch.float16), *conv, True, None, None, 1)
    monkeypatch.setenv(ENV, tile)
    plan = cuda_ops.conv_plan(*args)
    assert not plan.vector_output and not plan.vector_residual, plan
    _check(monkeypatch, tile, args, out)


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_prologue_keeps_padding_at_zero(name, dtype, tile, gen, monkeypatch):
    x, w, conv, out = _case(name, dtype, gen)
    c = x.shape[1]
    # A positive in_shift makes relu(in_shift) > 0, so padding applied before pre() would show.
    pre = (cuda_vector(gen, c, positive=True), cuda_vector(gen, c, positive=True))
    _check(monkeypatch, tile, (x, w, None, cuda_vector(gen, out[1]), None, *conv, False, *pre, 1), out)


# --- selection -------------------------------------------------------------------------------------


def _selection_args(gen, n, c, hw, k, r, stride):
    x = cuda_randn(gen, n, c, hw, hw, dtype=torch.float16)
    w = cuda_weight(gen, k, c, r, r, torch.float16)
    return (x, w, None, None, None, [stride] * 2, [r // 2] * 2, [1, 1], 1, True, None, None, 1)


@needs_sm90
@pytest.mark.parametrize(
    "value,shape,expect",
    [
        # ResNet-50 layer3 3x3 at batch 64: ~1000 FLOP/byte, 196 CTAs of 128x128 (more than the SMs): wgmma
        ("wgmma", (64, 256, 14, 256, 3, 1), "wgmma"),
        # 1x1 64 -> 256 at 8 x 56 x 56: 28 FLOP/byte (memory-bound) but a plain GEMM, both
        # operands by TMA: wgmma (with RESNET_KERNELS_CUDA_TMA=0: mma, test_selection_without_tma)
        ("wgmma", (8, 64, 56, 256, 1, 1), "wgmma"),
        # a memory-bound strided 1x1 with 64 | C: A by im2col TMA, so wgmma
        ("wgmma", (8, 256, 56, 512, 1, 2), "wgmma"),
        # a memory-bound strided 1x1 with C = 72 (A gathered by cp.async): mma
        ("wgmma", (8, 72, 56, 512, 1, 2), "mma"),
        # K = 64: layer1's 3x3 at batch 8, ~280 FLOP/byte, 196 CTAs of 128x64: the 128x64 wgmma tile
        ("wgmma", (8, 64, 56, 64, 3, 1), "wgmma"),
        # K = 64, a 1x1 256 -> 64 (51 FLOP/byte, memory-bound, plain GEMM): the 128x64 wgmma tile
        ("wgmma", (8, 256, 56, 64, 1, 1), "wgmma"),
        # K = 96: between the 128x64 and the 128x128 tiles, left on mma
        ("wgmma", (64, 96, 14, 96, 3, 1), "mma"),
        # K = 64 at batch 1 on 56x56: compute-bound (~260 FLOP/byte) but 25 CTAs of 128x64, fewer than the SMs
        ("wgmma", (1, 64, 56, 64, 3, 1), "mma"),
        # batch 1, 7x7 map, K = 512: 4 CTAs of 128x128, far fewer than the SMs
        ("wgmma", (1, 512, 7, 512, 3, 1), "mma"),
        # the default, and "mma", never run wgmma
        (None, (64, 256, 14, 256, 3, 1), "mma"),
        ("", (64, 256, 14, 256, 3, 1), "mma"),
        ("mma", (64, 256, 14, 256, 3, 1), "mma"),
    ],
)
def test_kernel_selection(value, shape, expect, gen, monkeypatch):
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    args = _selection_args(gen, *shape)
    y, kernels = kernels_run(lambda: _op(*args))
    wgmma = wgmma_ran(kernels)
    mma = any("implicit_gemm_kernel" in k for k in kernels)
    assert (wgmma, mma) == (expect == "wgmma", expect == "mma"), kernels
    if expect == "wgmma":  # the tile the plan names is the one that ran
        plan = cuda_ops.conv_plan(*args)
        assert plan.kernel == "wgmma" and wgmma_ran(kernels, plan.tile_n, plan.persistent), (plan, kernels)
        if args[1].shape[0] <= 64:
            assert plan.tile_n == 64, plan
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@needs_sm90
@pytest.mark.parametrize("shape", [(8, 64, 56, 256, 1, 1), (8, 256, 56, 64, 1, 1), (8, 256, 56, 512, 1, 2)])
def test_selection_without_tma(shape, gen, monkeypatch):
    """With RESNET_KERNELS_CUDA_TMA=0 a memory-bound call whose operands TMA would load (plain
    GEMM, strided 1x1) stays on the mma.sync kernel."""
    monkeypatch.setenv(ENV, "wgmma")
    monkeypatch.setenv("RESNET_KERNELS_CUDA_TMA", "0")
    assert cuda_ops.conv_plan(*_selection_args(gen, *shape)).kernel == "mma"


def test_bad_value_names_the_variable_and_the_choices(gen, monkeypatch):
    monkeypatch.setenv(ENV, "wgmma128")
    args = _selection_args(gen, 1, 16, 8, 32, 3, 1)
    with pytest.raises(RuntimeError, match=rf"{ENV}='wgmma128' is not a kernel choice; use one of mma .*wgmma_n256"):
        _op(*args)


@pytest.mark.parametrize("tile", list(TILES))
def test_forced_tile_runs_on_sm90_and_is_refused_elsewhere(tile, gen, monkeypatch):
    """On an H100/H200 a forced tile runs; on any other GPU it is a clear error, not a silent fallback."""
    monkeypatch.setenv(ENV, tile)
    args = _selection_args(gen, 2, 64, 9, 128, 3, 1)
    if IS_SM90:
        y, kernels = kernels_run(lambda: _op(*args))
        assert wgmma_ran(kernels, TILES[tile]), kernels
        assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]
    else:
        with pytest.raises(RuntimeError, match=rf"{ENV}={tile} needs the wgmma kernel.*compute capability 9.0"):
            _op(*args)
