"""TMA loads of the Hopper wgmma kernel (csrc/kernels/wgmma_conv.cuh, tma_map.cu) against the
float64 reference, and their choice by plan_conv and RESNET_KERNELS_CUDA_TMA (GPU only).

The plan takes, for a wgmma call (WgmmaLoads in csrc/kernels/launch.h):
  'tma_ab'     A (activations) and B (weights) by TMA: 1x1 filter, stride 1, no padding, no
               prologue (A is x as an (N*H*W) x C matrix);
  'tma_im2col' B by TMA, A by TMA's im2col mode: other calls with 64 | C/groups and no prologue;
  'tma_b'      B by TMA, A gathered with cp.async: every other call, and every call under
               RESNET_KERNELS_CUDA_TMA=weights;
  'cp.async'   both with cp.async: RESNET_KERNELS_CUDA_TMA=0.
These are the loads of the one-tile-per-CTA kernel: every test here runs with
RESNET_KERNELS_CUDA_PERSISTENT=0 (the persistent kernel, which takes the 'tma_ab' and 'tma_im2col'
calls by default, has tests/test_cuda_wgmma_ws.py).
Each numeric test checks, through the profiler's kernel names, that the kernel instance with
those loads ran (the template argument WgmmaLoads: 0 cp.async, 1 tma_b, 2 tma_ab, 3 tma_im2col),
so a plan that says TMA while the cp.async kernel runs fails here. Outputs land in NaN-poisoned
memory.
"""

import re

import pytest
import torch
from conftest import WGMMA_TILES, needs_cuda, needs_extension, needs_sm90
from helpers import REL_TOL, cuda_conv_call, into_poisoned_memory, kernels_run, oracle, rel_error

from resnet_kernels import cuda_ops

ENV = "RESNET_KERNELS_CUDA_KERNEL"
TMA_ENV = "RESNET_KERNELS_CUDA_TMA"
TILES = WGMMA_TILES  # value -> BN of the tile it forces
LOADS = {"cp.async": 0, "tma_b": 1, "tma_ab": 2, "tma_im2col": 3}  # plan name -> WgmmaLoads template argument

pytestmark = [needs_cuda, needs_extension]


@pytest.fixture(autouse=True)
def _one_tile_kernel(monkeypatch):
    monkeypatch.setenv("RESNET_KERNELS_CUDA_PERSISTENT", "0")

# name: (N, C, H, W, K, R, S, stride, padding, groups), all taking the wgmma kernel when forced
SHAPES = {
    # M = 147 (a 128-row tail), C = 72 (the second k tile mostly past the channels), K = 200
    "gemm_tails": (3, 72, 7, 7, 200, 1, 1, 1, 0, 1),
    # 4 groups of 16 input / 24 output channels: the group coordinate of both tensor maps
    "gemm_groups4": (2, 64, 6, 6, 96, 1, 1, 1, 0, 4),
    # many k tiles (C = 1024) and M = 2 * 14 * 14 = 392: the ring wraps several times
    "gemm_c1024": (2, 1024, 14, 14, 256, 1, 1, 1, 0, 1),
    # a 3x3 with 64 not dividing C (A gathered, B by TMA): gemm_k = 648 = 10 k tiles + 8, K = 200
    "conv3x3_tails": (3, 72, 9, 9, 200, 3, 3, 1, 1, 1),
    # a strided 1x1 (not a plain GEMM; im2col with traversal stride 2)
    "conv1x1_stride2": (2, 64, 16, 16, 128, 1, 1, 2, 0, 1),
    # im2col: a strided 3x3 on odd sizes (13x11 -> 7x6), C = 128 (2 k tiles per tap), K = 200
    "conv3x3_stride2_c128": (3, 128, 13, 11, 200, 3, 3, 2, 1, 1),
    # im2col: 2 groups of 64 input / 48 output channels, M = 162 (a row and image crossing tail)
    "conv3x3_groups2_c64": (2, 128, 9, 9, 96, 3, 3, 1, 1, 2),
}


def _args(name, dtype, gen, residual=True, prologue=False):
    return cuda_conv_call(SHAPES[name], dtype, gen, residual=residual, prologue=prologue)


def _expected_loads(name, tma, prologue=False):
    """The loads plan_conv must choose under RESNET_KERNELS_CUDA_TMA=tma (launch.h's rule)."""
    if tma == "0":
        return "cp.async"
    n, c, h, w, k, r, s, stride, padding, groups = SHAPES[name]
    if tma == "weights" or prologue:
        return "tma_b"
    if (r, s, stride, padding) == (1, 1, 1, 0):
        return "tma_ab"
    return "tma_im2col" if (c // groups) % 64 == 0 else "tma_b"


def _ran_with_loads(kernels, loads):
    # e.g. "wgmma_conv_kernel<__half, resnet_kernels::WgmmaTile<128, 5, 1>, (resnet_kernels::WgmmaLoads)2>"
    pattern = re.compile(rf"WgmmaLoads\)\s*{LOADS[loads]}\b")
    return any("wgmma_conv_kernel" in k and pattern.search(k) for k in kernels)


@needs_sm90
@pytest.mark.parametrize("tma", ["1", "weights", "0"], ids=["tma", "tma_weights", "cp_async"])
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_loads_match_the_reference(name, dtype, tile, tma, gen, monkeypatch):
    monkeypatch.setenv(ENV, tile)
    monkeypatch.setenv(TMA_ENV, tma)
    args, out_shape = _args(name, dtype, gen)
    plan = cuda_ops.conv_plan(*args)
    assert (plan.kernel, plan.tile_n, plan.loads) == ("wgmma", TILES[tile], _expected_loads(name, tma)), plan
    y, kernels = kernels_run(lambda: into_poisoned_memory(torch.ops.resnet_kernels.conv_bn_act_cuda, args, out_shape))
    assert _ran_with_loads(kernels, plan.loads), (plan, kernels)
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[dtype], f"relative error {err:.3g} > {REL_TOL[dtype]:.3g}"


@needs_sm90
@pytest.mark.parametrize("tile", list(TILES))
@pytest.mark.parametrize("name", ["gemm_tails", "conv3x3_stride2_c128"])
def test_prologue_keeps_a_gathered(name, tile, gen, monkeypatch):
    """A call with a pre-activation prologue transforms A in shared memory after the copy, which
    neither TMA path for A does: a 1x1 stride-1 call and an im2col-eligible 3x3 take 'tma_b'."""
    monkeypatch.setenv(ENV, tile)
    monkeypatch.delenv(TMA_ENV, raising=False)
    args, out_shape = _args(name, torch.float16, gen, residual=False, prologue=True)
    plan = cuda_ops.conv_plan(*args)
    assert plan.loads == _expected_loads(name, "1", prologue=True) == "tma_b", plan
    y, kernels = kernels_run(lambda: into_poisoned_memory(torch.ops.resnet_kernels.conv_bn_act_cuda, args, out_shape))
    assert _ran_with_loads(kernels, "tma_b"), kernels
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


def test_mma_plans_never_use_tma(gen, monkeypatch):
    """The mma.sync kernel has no TMA path: its plans say cp.async whatever the variable says."""
    monkeypatch.setenv(ENV, "mma")
    monkeypatch.setenv(TMA_ENV, "1")
    args, _ = _args("gemm_tails", torch.float16, gen)
    plan = cuda_ops.conv_plan(*args)
    assert (plan.kernel, plan.loads) == ("mma", "cp.async"), plan


@pytest.mark.parametrize("value", ["2", "yes", "tma"])
def test_bad_value_names_the_variable(value, gen, monkeypatch):
    monkeypatch.setenv(TMA_ENV, value)
    args, _ = _args("gemm_tails", torch.float16, gen)
    with pytest.raises(RuntimeError, match=rf"{TMA_ENV}='{value}' is not a TMA choice: use 1 .* weights .* 0 for"):
        torch.ops.resnet_kernels.conv_bn_act_cuda(*args)
