"""The persistent warp-specialised wgmma kernel (csrc/kernels/wgmma_ws_conv.cuh) against the
float64 reference, and its choice by plan_conv and RESNET_KERNELS_CUDA_PERSISTENT (GPU only).

A wgmma plan takes it (CudaPlan.persistent) where both operands come by TMA ('tma_ab': 1x1
stride-1 calls; 'tma_im2col': other calls with 64 | C/groups, no prologue) and the epilogue
tensors can move by TMA too (tma_epilogue_ok in csrc/kernels/launch.h: 8 | K/groups; y, scale
and shift 16-byte aligned; a residual absent or of y's shape in dense NHWC). One CTA per SM
walks the output tiles, so the shapes below include grids with several tiles per CTA (the
operand ring and the epilogue tiles wrap across output tiles) and grids with fewer tiles than
SMs. Each numeric test checks through the profiler's kernel names that wgmma_ws_conv_kernel
with the planned tile ran, into NaN-poisoned memory (the TMA store clips at the tensor's
edges: an unwritten or misplaced block shows as NaN).
"""

import pytest
import torch
from conftest import WGMMA_TILES, needs_cuda, needs_extension, needs_sm90
from helpers import (
    REL_TOL,
    cuda_conv_call,
    cuda_randn,
    cuda_vector,
    cuda_weight,
    into_poisoned_memory,
    kernels_run,
    oracle,
    rel_error,
    wgmma_ran,
)

from resnet_kernels import cuda_ops

ENV = "RESNET_KERNELS_CUDA_KERNEL"
PERSISTENT_ENV = "RESNET_KERNELS_CUDA_PERSISTENT"
TILES = WGMMA_TILES  # value -> BN of the tile it forces
DTYPES = [torch.float16, torch.bfloat16]

pytestmark = [needs_cuda, needs_extension]

# name: (N, C, H, W, K, R, S, stride, padding, groups)
SHAPES = {
    # one k tile per output tile (C = 64), M = 8 * 28 * 28 = 6272 (49 row tiles): with K = 256
    # 196 (128x64), 98 (128x128) or 49 (128x256) tiles, i.e. more and fewer tiles than SMs
    "gemm_c64": (8, 64, 28, 28, 256, 1, 1, 1, 0, 1),
    # M = 16 * 56 * 56 = 50176 (392 row tiles): several output tiles per CTA on every tile width
    "gemm_many_tiles": (16, 64, 56, 56, 128, 1, 1, 1, 0, 1),
    # M = 147 (a 19-row tail), C = 72 (k tail), K = 200 (column tail clipped by the store)
    "gemm_tails": (3, 72, 7, 7, 200, 1, 1, 1, 0, 1),
    # 4 groups of 32 input / 64 output channels: the group coordinate of all four tensor maps
    "gemm_groups4": (2, 128, 6, 6, 256, 1, 1, 1, 0, 4),
    # C = 1024: 16 k tiles per output tile, the ring wraps inside a tile
    "gemm_c1024": (2, 1024, 14, 14, 256, 1, 1, 1, 0, 1),
    # im2col: a padded 3x3 with several tiles per CTA (M = 6272)
    "conv3x3_c64": (8, 64, 28, 28, 64, 3, 3, 1, 1, 1),
    # im2col: a strided 3x3 on odd sizes (13x11 -> 7x6), C = 128, K = 200
    "conv3x3_stride2_c128": (3, 128, 13, 11, 200, 3, 3, 2, 1, 1),
    # im2col: a strided 1x1 (traversal stride 2)
    "conv1x1_stride2": (2, 64, 16, 16, 128, 1, 1, 2, 0, 1),
    # im2col: 2 groups of 64 input / 48 output channels
    "conv3x3_groups2_c64": (2, 128, 9, 9, 96, 3, 3, 1, 1, 2),
}

# epilogue variant: (scale and shift, residual, relu)
EPILOGUES = {"full": (True, True, True), "no_residual": (True, False, False), "bare": (False, False, True)}


def _args(name, dtype, gen, epilogue="full"):
    affine, residual, relu = EPILOGUES[epilogue]
    return cuda_conv_call(SHAPES[name], dtype, gen, affine=affine, residual=residual, relu=relu)


def _expected_loads(name):
    n, c, h, w, k, r, s, stride, padding, groups = SHAPES[name]
    return "tma_ab" if (r, s, stride, padding) == (1, 1, 1, 0) else "tma_im2col"


def _run(args, out_shape):
    return kernels_run(lambda: into_poisoned_memory(torch.ops.resnet_kernels.conv_bn_act_cuda, args, out_shape))


@needs_sm90
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_matches_the_reference(name, dtype, tile, epilogue, gen, monkeypatch):
    monkeypatch.setenv(ENV, tile)
    monkeypatch.delenv(PERSISTENT_ENV, raising=False)
    monkeypatch.delenv("RESNET_KERNELS_CUDA_TMA", raising=False)
    args, out_shape = _args(name, dtype, gen, epilogue)
    plan = cuda_ops.conv_plan(*args)
    assert (plan.kernel, plan.tile_n, plan.loads, plan.persistent) == (
        "wgmma", TILES[tile], _expected_loads(name), True), plan
    y, kernels = _run(args, out_shape)
    assert wgmma_ran(kernels, TILES[tile], persistent=True), kernels
    assert not wgmma_ran(kernels, persistent=False), kernels
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[dtype], f"relative error {err:.3g} > {REL_TOL[dtype]:.3g}"


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
def test_switched_off_runs_the_one_tile_kernel(tile, gen, monkeypatch):
    monkeypatch.setenv(ENV, tile)
    monkeypatch.setenv(PERSISTENT_ENV, "0")
    args, out_shape = _args("gemm_c64", torch.float16, gen)
    plan = cuda_ops.conv_plan(*args)
    assert (plan.kernel, plan.loads, plan.persistent) == ("wgmma", "tma_ab", False), plan
    y, kernels = _run(args, out_shape)
    assert wgmma_ran(kernels, TILES[tile], persistent=False) and not wgmma_ran(kernels, persistent=True), kernels
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


def _variant(variant, gen):
    """gemm_c64 (a 'tma_ab' call) changed so that its epilogue or its A cannot go by TMA."""
    args, out_shape = _args("gemm_c64", torch.float16, gen)
    x, wt, sc, sh, res, stride, padding, dilation, groups, relu, pre_s, pre_b, rstride = args
    n, k, p, q = out_shape
    if variant == "nchw_residual":
        res = cuda_randn(gen, n, k, p, q, dtype=torch.float16, memory_format=torch.contiguous_format)
    elif variant == "channel_slice_residual":
        res = cuda_randn(gen, n, k + 8, p, q, dtype=torch.float16)[:, 8:]
    elif variant == "option_a_residual":
        res, rstride = cuda_randn(gen, n, k // 2, 2 * p - 1, 2 * q - 1, dtype=torch.float16), 2
    elif variant == "misaligned_scale":
        sc = cuda_vector(gen, k + 1, positive=True)[1:]
    elif variant == "prologue":  # A transformed after the copy: gathered ('tma_b'), one-tile kernel
        c = x.shape[1]
        pre_s, pre_b = cuda_vector(gen, c, positive=True), cuda_vector(gen, c, positive=True)
    elif variant == "k36":  # 8 does not divide K: no 16-byte output rows
        k = 36
        wt, sc, sh = cuda_weight(gen, k, x.shape[1], 1, 1, torch.float16), cuda_vector(gen, k), cuda_vector(gen, k)
        res = cuda_randn(gen, n, k, p, q, dtype=torch.float16)
        out_shape = (n, k, p, q)
    return (x, wt, sc, sh, res, stride, padding, dilation, groups, relu, pre_s, pre_b, rstride), out_shape


@needs_sm90
@pytest.mark.parametrize(
    "variant",
    ["nchw_residual", "channel_slice_residual", "option_a_residual", "misaligned_scale", "prologue", "k36"],
)
def test_calls_the_persistent_kernel_cannot_take(variant, gen, monkeypatch):
    """Where the epilogue tensors (or A) cannot move by TMA the plan keeps the one-tile kernel,
    whose result is still right."""
    monkeypatch.setenv(ENV, "wgmma_n128")
    monkeypatch.delenv(PERSISTENT_ENV, raising=False)
    args, out_shape = _variant(variant, gen)
    plan = cuda_ops.conv_plan(*args)
    assert plan.kernel == "wgmma" and not plan.persistent, plan
    y, kernels = _run(args, out_shape)
    assert wgmma_ran(kernels, 128, persistent=False) and not wgmma_ran(kernels, persistent=True), kernels
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@needs_sm90
@pytest.mark.parametrize("name", ["gemm_many_tiles", "conv3x3_c64"])
def test_cuda_graph_replay(name, gen, monkeypatch):
    """The tensor maps are kernel arguments (by value), so a captured launch replays on the
    captured buffers: new input data copied into them gives the new result."""
    monkeypatch.setenv(ENV, "wgmma_n128")
    monkeypatch.delenv(PERSISTENT_ENV, raising=False)
    args, _ = _args(name, torch.float16, gen)
    assert cuda_ops.conv_plan(*args).persistent
    op = torch.ops.resnet_kernels.conv_bn_act_cuda
    op(*args)  # warm up outside the capture (tensor-map encoder lookup, attributes)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = op(*args)
    args[0].copy_(cuda_randn(gen, *args[0].shape, dtype=torch.float16))
    args[4].copy_(cuda_randn(gen, *args[4].shape, dtype=torch.float16))
    graph.replay()
    torch.cuda.synchronize()
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@pytest.mark.parametrize("value", ["2", "yes", "on"])
def test_bad_value_names_the_variable(value, gen, monkeypatch):
    monkeypatch.setenv(PERSISTENT_ENV, value)
    args, _ = _args("gemm_tails", torch.float16, gen)
    with pytest.raises(RuntimeError, match=rf"{PERSISTENT_ENV}='{value}' is not a choice: use 1 .* 0 for"):
        torch.ops.resnet_kernels.conv_bn_act_cuda(*args)
