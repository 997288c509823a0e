"""The mma.sync kernel's staged (vector) epilogue against the paired one (GPU only).

Without split-K, the kernel stages its fp32 tile through shared memory and
finishes 8 channels per thread with 16-byte residual loads and 16-byte output
stores where the host allows it (8 | K/groups, y, scale and shift 16-byte
aligned; residual: channel stride 1, 8-element aligned pixels, 8 | residual
channels); everything else keeps the paired 32-bit stores from the MMA
fragments. torch.ops.resnet_kernels.conv_plan_cuda reports which path a call
takes, so each case asserts the path it means to test as well as the result
(float64 reference, NaN-poisoned output).
"""

import pytest
import torch
from conftest import needs_cuda, needs_extension
from helpers import REL_TOL, into_poisoned_memory, oracle, rel_error
from helpers import cuda_randn as _randn
from helpers import cuda_vector as _vector
from helpers import cuda_weight as _weight

from resnet_kernels import cuda_ops

pytestmark = [needs_cuda, needs_extension]

DTYPES = [torch.float16, torch.bfloat16]
CL = torch.channels_last


def _op(*args):
    return torch.ops.resnet_kernels.conv_bn_act_cuda(*args)


@pytest.fixture(autouse=True)
def _mma_without_split(monkeypatch):
    monkeypatch.setenv("RESNET_KERNELS_CUDA_SPLIT_K", "1")  # the GEMM kernel's own epilogue on every shape
    monkeypatch.delenv("RESNET_KERNELS_CUDA_KERNEL", raising=False)


# name: (N, C, H, W, K, R, S, stride, padding, dilation, groups)
SHAPES = {
    "64x64_m_tail": (2, 64, 9, 9, 64, 3, 3, 1, 1, 1, 1),  # M = 162: a partial M tile
    "64x64_kg_tail": (1, 24, 11, 7, 40, 3, 3, 1, 2, 2, 1),  # Kg = 40: groups 5..7 of the 64-wide tile unused
    "128x128": (10, 64, 48, 48, 128, 3, 3, 1, 1, 1, 1),  # 180 CTAs of 128x128 (the large tile on <= 180 SMs)
    "128x128_kg192": (10, 64, 48, 48, 192, 1, 1, 1, 0, 1, 1),  # Kg tail of the large tile
    "groups4_kg16": (2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 4),  # 4 groups of 16 output channels
    "groups2_kg36": (2, 64, 8, 8, 72, 3, 3, 1, 1, 1, 2),  # 8 does not divide Kg: paired stores
}


def _case(name, dtype, gen):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = SHAPES[name]
    x = _randn(gen, n, c, h, w, dtype=dtype)
    wt = _weight(gen, k, c // groups, r, s, dtype)
    p = (h + 2 * padding - dilation * (r - 1) - 1) // stride + 1
    q = (w + 2 * padding - dilation * (s - 1) - 1) // stride + 1
    return x, wt, ([stride] * 2, [padding] * 2, [dilation] * 2, groups), (n, k, p, q)


def _check(args, out_shape):
    plan = cuda_ops.conv_plan(*args)
    assert plan.kernel == "mma" and plan.split == 1, plan
    y = into_poisoned_memory(_op, args, out_shape)
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[args[0].dtype], f"relative error {err:.3g} > {REL_TOL[args[0].dtype]:.3g} ({plan})"
    return plan


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_residual_layouts(name, dtype, gen):
    """Dense NHWC residual: 16-byte loads; NCHW: scalar loads, same 16-byte stores."""
    x, w, conv, out = _case(name, dtype, gen)
    sc, sh = _vector(gen, out[1], positive=True), _vector(gen, out[1])
    kg = out[1] // conv[3]
    for fmt in (CL, torch.contiguous_format):
        res = _randn(gen, *out, dtype=dtype, memory_format=fmt)
        plan = _check((x, w, sc, sh, res, *conv, True, None, None, 1), out)
        assert plan.vector_output == (kg % 8 == 0), plan
        assert plan.vector_residual == (kg % 8 == 0 and fmt == CL), plan
    if name.startswith("128x128") and torch.cuda.get_device_properties(0).multi_processor_count <= 180:
        assert (plan.tile_m, plan.tile_n) == (128, 128)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset,vector_residual", [(8, True), (1, False)])
def test_residual_channel_slice(offset, vector_residual, dtype, gen):
    """A channel slice of a wider NHWC tensor: 16-byte loads when the slice starts 16-byte
    aligned (8 elements in), scalar loads inside the vector epilogue when it does not."""
    x, w, conv, out = _case("64x64_m_tail", dtype, gen)
    n, k, p, q = out
    wide = _randn(gen, n, k + 8, p, q, dtype=dtype)
    res = wide[:, offset:offset + k]
    plan = _check((x, w, None, _vector(gen, k), res, *conv, True, None, None, 1), out)
    assert plan.vector_output and plan.vector_residual == vector_residual, plan


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("res_channels,residual_stride,res_format,vector_residual",
                         [(32, 2, CL, True), (24, 3, CL, True), (20, 2, CL, False),
                          (16, 2, torch.contiguous_format, False)])
def test_option_a_residual(res_channels, residual_stride, res_format, vector_residual, dtype, gen):
    """Channels >= res_channels add zero: an 8-channel group is wholly inside or outside when
    8 | res_channels (vector loads), else the scalar per-channel rule applies."""
    x, w, conv, out = _case("64x64_m_tail", dtype, gen)
    n, _, p, q = out
    size = p * residual_stride - (residual_stride - 1)
    res = _randn(gen, n, res_channels, size, size, dtype=dtype, memory_format=res_format)
    plan = _check((x, w, None, None, res, *conv, True, None, None, residual_stride), out)
    assert plan.vector_output and plan.vector_residual == vector_residual, plan


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_scale_takes_the_paired_path(dtype, gen):
    x, w, conv, out = _case("64x64_m_tail", dtype, gen)
    k = out[1]
    scale = _vector(gen, k + 1, positive=True)[1:]  # 4 bytes past a 16-byte boundary
    plan = _check((x, w, scale, _vector(gen, k), None, *conv, True, None, None, 1), out)
    assert not plan.vector_output and not plan.vector_residual, plan


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_prologue_and_no_relu(dtype, gen):
    x, w, conv, out = _case("128x128_kg192", dtype, gen)
    c = x.shape[1]
    res = _randn(gen, *out, dtype=dtype)
    args = (x, w, _vector(gen, out[1]), None, res, *conv, False, _vector(gen, c, positive=True),
            _vector(gen, c), 1)
    plan = _check(args, out)
    assert plan.vector_output and plan.vector_residual, plan
