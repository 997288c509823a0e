"""The cuda backend's kernels against the float64 reference (GPU only).

Every distinct conv layer of the ImageNet ResNets at batch 1 and 32 must be at
most twice as far from float64 as cuDNN itself is; the contract features
(option-A residual, prologue with padding, groups, the C=3 stem, other layouts)
are checked on small shapes; opcheck runs on CUDA tensors.

Unwritten outputs: the op's schema has no out= argument, so each numeric test
frees a NaN-filled block of the output's exact size to an emptied caching
allocator just before the call; the op's output allocation then reuses it
(asserted through data_ptr). This needs channels_last x and weight, so that the
output is the op's first allocation (a split-K workspace, if any, comes after it).
"""

import pytest
import torch
from conftest import needs_cuda, needs_extension
from helpers import REL_TOL, assert_within_cudnn_error, into_poisoned_memory, oracle, rel_error
from helpers import cuda_randn as _randn
from helpers import cuda_vector as _vector
from helpers import cuda_weight as _weight

from resnet_kernels import cuda_ops  # noqa: F401  (loads the extension, registers the fake)
from resnet_kernels.layer_shapes import distinct_layers

pytestmark = [needs_cuda, needs_extension]

DTYPES = [torch.float16, torch.bfloat16]
CL = torch.channels_last


def _op(*args):
    return torch.ops.resnet_kernels.conv_bn_act_cuda(*args)


def _into_poisoned_memory(args, shape):
    return into_poisoned_memory(_op, args, shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("layer", distinct_layers(), ids=lambda layer: layer.name)
def test_resnet_layer(layer, batch, dtype, gen):
    x = _randn(gen, batch, layer.C, layer.H, layer.W, dtype=dtype)
    w = _weight(gen, layer.K, layer.C // layer.groups, layer.R, layer.S, dtype)
    sc, sh = _vector(gen, layer.K, positive=True), _vector(gen, layer.K)
    res = _randn(gen, batch, layer.K, layer.P, layer.Q, dtype=dtype) if layer.has_residual else None
    conv = ([layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups)
    args = (x, w, sc, sh, res, *conv, layer.relu, None, None, 1)
    y = _into_poisoned_memory(args, (batch, layer.K, layer.P, layer.Q))
    assert y.is_contiguous(memory_format=CL)
    ref = oracle(*args)
    assert_within_cudnn_error(y, x, w, sc, sh, res, layer, ref)


# --- contract features on small shapes ---------------------------------------------------------

# name: (N, C, H, W, K, R, S, stride, padding, dilation, groups); the comment says which kernel runs.
SHAPES = {
    "3x3_p1": (2, 64, 9, 9, 64, 3, 3, 1, 1, 1, 1),  # tensor cores, small tile
    "1x1_s2": (2, 64, 9, 9, 256, 1, 1, 2, 0, 1, 1),  # tensor cores, M tail
    "3x3_s2_large_tile": (16, 64, 32, 32, 128, 3, 3, 2, 1, 1, 1),  # tensor cores, 128x128 tile
    "dilation2_k_tail": (1, 24, 11, 7, 40, 3, 3, 1, 2, 2, 1),  # tensor cores, gemm_k and Kg tails
    "groups32_c8": (2, 256, 8, 8, 256, 3, 3, 1, 1, 1, 32),  # tensor cores, one grid row per group
    "groups32_c4": (2, 128, 8, 8, 128, 3, 3, 2, 1, 1, 32),  # direct (ResNeXt 32x4d stage 1)
    "stem_c3": (2, 3, 20, 20, 64, 7, 7, 2, 3, 1, 1),  # direct
    "depthwise": (2, 32, 7, 7, 32, 3, 3, 1, 1, 1, 32),  # direct
    "odd_k": (1, 16, 6, 6, 9, 3, 3, 1, 1, 1, 1),  # direct
}


def _case(name, dtype, gen, memory_format=CL):
    n, c, h, w, k, r, s, stride, padding, dilation, groups = SHAPES[name]
    x = _randn(gen, n, c, h, w, dtype=dtype, memory_format=memory_format)
    wt = _weight(gen, k, c // groups, r, s, dtype)
    p = (h + 2 * padding - dilation * (r - 1) - 1) // stride + 1
    q = (w + 2 * padding - dilation * (s - 1) - 1) // stride + 1
    conv = ([stride] * 2, [padding] * 2, [dilation] * 2, groups)
    return x, wt, conv, (n, k, p, q)


def _check(args, out_shape):
    y = _into_poisoned_memory(args, out_shape)
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[args[0].dtype], f"relative error {err:.3g} > {REL_TOL[args[0].dtype]:.3g}"
    return y


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes_with_residual(name, dtype, gen):
    x, w, conv, out = _case(name, dtype, gen)
    sc, sh = _vector(gen, out[1], positive=True), _vector(gen, out[1])
    res = _randn(gen, *out, dtype=dtype, memory_format=torch.contiguous_format)  # read through its strides
    _check((x, w, sc, sh, res, *conv, True, None, None, 1), out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["3x3_p1", "groups32_c8", "stem_c3", "dilation2_k_tail"])
@pytest.mark.parametrize("in_scale,in_shift", [(True, True), (False, True), (True, False)])
def test_prologue_keeps_padding_at_zero(name, in_scale, in_shift, dtype, gen):
    x, w, conv, out = _case(name, dtype, gen)
    c = x.shape[1]
    # A positive in_shift makes relu(in_shift) > 0, so padding before pre() would show.
    pre = (_vector(gen, c, positive=True) if in_scale else None, _vector(gen, c, positive=True) if in_shift else None)
    _check((x, w, None, _vector(gen, out[1]), None, *conv, False, *pre, 1), out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("res_channels,residual_stride,res_format", [(32, 2, CL), (16, 2, torch.contiguous_format),
                                                                       (64, 1, CL), (5, 3, torch.contiguous_format)])
def test_option_a_residual(res_channels, residual_stride, res_format, dtype, gen):
    x, w, conv, out = _case("3x3_p1", dtype, gen)
    n, _, p, q = out
    size = p * residual_stride - (residual_stride - 1)  # ceil(size / residual_stride) == p
    res = _randn(gen, n, res_channels, size, size, dtype=dtype, memory_format=res_format)
    _check((x, w, None, None, res, *conv, True, None, None, residual_stride), out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "sliced"])
def test_non_channels_last_input(layout, dtype, gen):
    """x is converted to NHWC and the output comes back contiguous (NCHW)."""
    x, w, conv, out = _case("3x3_p1", dtype, gen, memory_format=torch.contiguous_format)
    if layout == "sliced":  # every other channel of a larger tensor
        x = _randn(gen, x.shape[0], 2 * x.shape[1], *x.shape[2:], dtype=dtype)[:, ::2]
    w = w.contiguous()  # an NCHW weight: repacked to KRSC by the op
    args = (x, w, None, _vector(gen, out[1]), None, *conv, True, None, None, 1)
    y = _op(*args)
    assert y.is_contiguous()
    assert rel_error(y, oracle(*args)) <= REL_TOL[dtype]


@pytest.mark.parametrize("prologue", [False, True])
@pytest.mark.parametrize("name", ["3x3_p1", "1x1_s2", "stem_c3", "groups32_c4"])
def test_nan_input_propagates_like_torch(name, prologue, gen):
    """Through the public API (the stem's channel padding, ResNeXt's group merging included): one
    NaN input value makes exactly the outputs whose window holds it NaN, as in torch."""
    from resnet_kernels.functional import conv_bn_act

    x, w, conv, out = _case(name, torch.float16, gen)
    x[0, x.shape[1] - 1, x.shape[2] // 2, x.shape[3] // 2] = float("nan")
    sc, sh = _vector(gen, out[1], positive=True), _vector(gen, out[1])
    pre = (_vector(gen, x.shape[1], positive=True), _vector(gen, x.shape[1])) if prologue else (None, None)
    stride, padding, dilation, groups = conv
    y = conv_bn_act(x, w, sc, sh, None, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    in_scale=pre[0], in_shift=pre[1], backend="cuda")
    ref = oracle(x, w, sc, sh, None, *conv, True, *pre, 1)
    assert ref.isnan().any() and torch.equal(y.isnan(), ref.isnan())
    assert rel_error(y[~ref.isnan()], ref[~ref.isnan()]) <= REL_TOL[torch.float16]


@pytest.mark.parametrize("h,w_stride", [(1, "nchw"), (4, 7)])
def test_width_one_input_with_any_width_stride(h, w_stride, gen):
    """A size-1 width may carry any stride (NCHW (2, 64, 1, 1) has (64, 1, 1, 1)); the op must
    read the one pixel per row right with a horizontal padding of 2 on either side."""
    x = _randn(gen, 2, 64, h, 1, dtype=torch.float16, memory_format=torch.contiguous_format)
    if isinstance(w_stride, int):  # channels_last memory, an arbitrary stride on the size-1 width
        x = x.contiguous(memory_format=CL)
        x = x.as_strided(x.shape, (x.stride(0), 1, x.stride(2), w_stride))
    w = _weight(gen, 64, 64, 3, 3, torch.float16)
    args = (x, w, None, _vector(gen, 64), None, [2, 2], [1, 2], [1, 1], 1, True, None, None, 1)
    assert rel_error(_op(*args), oracle(*args)) <= REL_TOL[torch.float16]


def test_public_api_runs_the_cuda_backend(gen):
    from resnet_kernels.functional import conv_bn_act

    x, w, conv, out = _case("1x1_s2", torch.float16, gen)
    y = conv_bn_act(x, w, stride=2, backend="cuda")
    ref = conv_bn_act(x.double(), w.double(), stride=2, backend="reference")
    assert y.shape == out and rel_error(y, ref) <= REL_TOL[torch.float16]


# --- the op contract and errors ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["3x3_p1", "stem_c3"])
def test_opcheck_on_cuda(name, gen):
    x, w, conv, out = _case(name, torch.float16, gen)
    res = _randn(gen, *out, dtype=torch.float16)
    args = (x, w, _vector(gen, out[1]), _vector(gen, out[1]), res, *conv, True, _vector(gen, x.shape[1]), None, 1)
    torch.library.opcheck(torch.ops.resnet_kernels.conv_bn_act_cuda.default, args)


def test_float32_is_rejected_and_names_the_other_backends(gen):
    x, w, conv, _ = _case("3x3_p1", torch.float32, gen)
    with pytest.raises(RuntimeError, match="backend='triton' or backend='reference'"):
        _op(x, w, None, None, None, *conv, True, None, None, 1)


def test_mixed_devices_name_the_argument(gen):
    x, w, conv, _ = _case("3x3_p1", torch.float16, gen)
    with pytest.raises(RuntimeError, match="weight must be a CUDA tensor"):
        _op(x, w.cpu(), None, None, None, *conv, True, None, None, 1)
    with pytest.raises(RuntimeError, match="scale must be float32"):
        _op(x, w, torch.ones(w.shape[0], device="cuda", dtype=torch.float16), None, None, *conv, True, None, None, 1)
