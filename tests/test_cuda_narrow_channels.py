"""The cuda backend's narrow-channel rewrites (resnet_kernels/cuda_conv.py).

CPU part (runs everywhere): the plan per shape; every rewrite (channel padding
for the C=3 stem and odd channels per group, block-diagonal merging for
ResNeXt's 4 channels per group) gives the original call's result, checked by
running cuda_conv.run with the float64 reference op in place of the C++ op;
the op receives what its tensor-core kernel needs; the weight cache.

GPU part: the real op on the stem and ResNeXt shapes against float64, and the
kernel that actually ran (profiler kernel names): the tensor-core kernel.
"""

import gc
import math

import pytest
import torch
from conftest import needs_cuda, needs_extension
from helpers import REL_TOL, kernels_run, oracle, rel_error

from resnet_kernels import backends, cuda_conv, reference
from resnet_kernels._weight_cache import block_diagonal

CL = torch.channels_last


# --- plan --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "c,k,groups,transform,kernel,kernel_groups,cg,mac_factor",
    [
        (64, 64, 1, "none", "tensor_core", 1, 64, 1.0),
        (256, 256, 32, "none", "tensor_core", 32, 8, 1.0),  # ResNeXt 32x4d stage 2
        (3, 64, 1, "pad", "tensor_core", 1, 8, 8 / 3),  # ImageNet stem
        (128, 128, 32, "merge", "tensor_core", 16, 8, 2.0),  # ResNeXt 32x4d stage 1
        (32, 32, 32, "merge", "tensor_core", 4, 8, 8.0),  # depthwise
        (16, 6, 2, "merge", "tensor_core", 1, 16, 2.0),  # C/g fine, odd K/g: merging makes it even
        (15, 30, 5, "pad", "tensor_core", 5, 8, 8 / 3),  # odd C/g, no divisor of 5 helps
        (6, 6, 3, "pad", "tensor_core", 3, 8, 4.0),  # C/g = 2 would need m = 4
        (16, 9, 1, "none", "direct", 1, 16, 1.0),  # odd K: only the direct kernel
        (3, 9, 1, "none", "direct", 1, 3, 1.0),  # padding would not help: K is odd
    ],
)
def test_plan(c, k, groups, transform, kernel, kernel_groups, cg, mac_factor):
    p = cuda_conv.plan(c, k, groups)
    assert (p.transform, p.kernel, p.groups, p.c_per_group) == (transform, kernel, kernel_groups, cg)
    assert p.mac_factor == pytest.approx(mac_factor)
    if p.kernel == "tensor_core":
        assert p.c_per_group % 8 == 0 and (k // p.groups) % 2 == 0


# --- the rewrites against the reference, float64 ------------------------------------------------

# name: (N, C, H, W, K, R, S, stride, padding, groups)
CASES = {
    "stem_c3": (2, 3, 17, 15, 64, 7, 7, 2, 3, 1),
    "resnext_32x4d": (2, 128, 6, 6, 128, 3, 3, 1, 1, 32),
    "resnext_32x4d_s2": (1, 128, 7, 7, 128, 3, 3, 2, 1, 32),
    "odd_cg_pad_per_group": (2, 15, 6, 5, 30, 3, 3, 1, 1, 5),
    "cg2_pad_per_group": (1, 6, 5, 5, 6, 3, 3, 1, 1, 3),
    "depthwise_merge": (1, 16, 5, 5, 16, 3, 3, 1, 1, 16),
    "aligned_nchw_weight": (1, 16, 5, 5, 32, 3, 3, 1, 1, 1),
}


def _inputs(name, gen, layout, prologue):
    n, c, h, w, k, r, s, stride, padding, groups = CASES[name]
    f64 = dict(generator=gen, dtype=torch.float64)
    x = torch.randn(n, c, h, w, **f64).contiguous(memory_format=layout)
    weight = torch.randn(k, c // groups, r, s, **f64)  # NCHW memory, as an unconverted model holds it
    p = (h + 2 * padding - r) // stride + 1
    q = (w + 2 * padding - s) // stride + 1
    # Positive in_shift: relu(in_shift) > 0, so a padded channel or tap that saw pre() would show.
    pre = (torch.rand(c, **f64) + 0.5, torch.rand(c, **f64) + 0.5) if prologue else (None, None)
    args = (x, weight, torch.rand(k, **f64) + 0.5, torch.randn(k, **f64),
            torch.randn(n, k, p, q, **f64), [stride] * 2, [padding] * 2, [1, 1], groups, True, *pre, 1)
    return args


def _checking_op(calls):
    """The reference op, after checking that the call is one the tensor-core kernel takes."""

    def op(x, w, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift, rs):
        c = x.shape[1]
        assert c % groups == 0 and (c // groups) % 8 == 0 and (w.shape[0] // groups) % 2 == 0
        assert w.shape[1] == c // groups and w.is_contiguous(memory_format=CL)  # KRSC
        for v in (in_scale, in_shift):
            assert v is None or (v.shape == (c,) and v.is_contiguous())
        calls.append((tuple(x.shape), tuple(w.shape), groups))
        return reference.conv_bn_act(x, w, scale, shift, residual, stride, padding, dilation, groups, relu,
                                     in_scale, in_shift, rs)

    return op


@pytest.mark.parametrize("prologue", [False, True], ids=["plain", "prologue"])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("name", list(CASES))
def test_rewrite_is_exact(name, layout, prologue, gen):
    args = _inputs(name, gen, layout, prologue)
    calls = []
    y = cuda_conv.run(_checking_op(calls), *args)
    ref = reference.conv_bn_act(*args)
    assert len(calls) == 1
    assert y.shape == ref.shape
    # Same memory format as the reference (channels_last out for channels_last x), even when x was padded.
    assert (y.is_contiguous(), y.is_contiguous(memory_format=CL)) == (ref.is_contiguous(),
                                                                       ref.is_contiguous(memory_format=CL))
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_padded_input_and_vectors(gen):
    x = torch.randn(2, 6, 3, 4, generator=gen, dtype=torch.float64)
    xp = cuda_conv.pad_input(x, groups=3, c_per_group=8)
    assert xp.shape == (2, 24, 3, 4) and xp.is_contiguous(memory_format=CL)
    per_group = xp.view(2, 3, 8, 3, 4)
    assert torch.equal(per_group[:, :, :2], x.view(2, 3, 2, 3, 4))
    assert torch.equal(per_group[:, :, 2:], torch.zeros(2, 3, 6, 3, 4, dtype=torch.float64))
    v = torch.arange(1.0, 7.0)
    assert cuda_conv.pad_vector(v, 3, 8).tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0,
                                                       5, 6, 0, 0, 0, 0, 0, 0]
    assert cuda_conv.pad_vector(None, 3, 8) is None


def test_block_diagonal(gen):
    w = torch.randn(12, 2, 3, 3, generator=gen, dtype=torch.float64)  # groups 6: 2 in, 2 out each
    merged = block_diagonal(w, 6, 3)  # 2 groups of 6 in, 6 out
    assert merged.shape == (12, 6, 3, 3)
    for k in range(12):
        j = (k // 2) % 3  # position of k's original group inside its merged group
        assert torch.equal(merged[k, 2 * j: 2 * j + 2], w[k])
        others = torch.cat([merged[k, : 2 * j], merged[k, 2 * j + 2:]])
        assert torch.equal(others, torch.zeros_like(others))  # zeros between the diagonal blocks
    assert block_diagonal(w, 6, 1) is w


# --- weight cache ----------------------------------------------------------------------------


def _counting_transform(monkeypatch):
    calls = []
    real = cuda_conv.kernel_weight_uncached

    def transform(weight, groups, p):
        calls.append(p.transform)
        return real(weight, groups, p)

    monkeypatch.setattr(cuda_conv, "kernel_weight_uncached", transform)
    return calls


@pytest.mark.parametrize("name", ["stem_c3", "resnext_32x4d", "aligned_nchw_weight"])
def test_weight_cache_hit_invalidation_and_free(name, monkeypatch, gen):
    calls = _counting_transform(monkeypatch)
    args = list(_inputs(name, gen, CL, prologue=False))
    weight, groups = args[1], args[8]
    p = cuda_conv.plan(args[0].shape[1], weight.shape[0], groups)
    first = cuda_conv.kernel_weight(weight, groups, p)
    assert cuda_conv.kernel_weight(weight, groups, p) is first and len(calls) == 1  # hit: no work
    assert first.is_contiguous(memory_format=CL)

    with torch.no_grad():
        weight.mul_(-1.5)  # bumps the version counter: the cached copy is stale
    second = cuda_conv.kernel_weight(weight, groups, p)
    assert len(calls) == 2 and second is not first
    torch.testing.assert_close(cuda_conv.run(_checking_op([]), *args), reference.conv_bn_act(*args),
                               rtol=1e-12, atol=1e-12)  # the edited weight's values are the ones used

    entries = len(cuda_conv._weights)
    del weight, args
    gc.collect()
    assert len(cuda_conv._weights) == entries - 1  # a freed weight leaves the cache


def test_channels_last_weight_that_needs_nothing_is_not_copied(gen):
    w = torch.randn(32, 16, 3, 3, generator=gen).contiguous(memory_format=CL)
    entries = len(cuda_conv._weights)
    assert cuda_conv.kernel_weight(w, 1, cuda_conv.plan(16, 32, 1)) is w
    assert len(cuda_conv._weights) == entries


def test_inference_tensors_are_transformed_every_call(monkeypatch):
    calls = _counting_transform(monkeypatch)
    with torch.inference_mode():
        w = torch.randn(64, 3, 7, 7)
    p = cuda_conv.plan(3, 64, 1)
    a, b = cuda_conv.kernel_weight(w, 1, p), cuda_conv.kernel_weight(w, 1, p)
    assert len(calls) == 2 and torch.equal(a, b)


def test_cuda_backend_uses_the_wrapper():
    assert backends._cuda_impl() is cuda_conv.conv_bn_act


# --- on the GPU: the real op -------------------------------------------------------------------

DTYPES = [torch.float16, torch.bfloat16]

# name: (N, C, H, W, K, R, S, stride, padding, groups)
GPU_CASES = {
    "stem_c3": (2, 3, 20, 20, 64, 7, 7, 2, 3, 1),
    "resnet50_stem_224": (4, 3, 224, 224, 64, 7, 7, 2, 3, 1),
    "resnext_32x4d": (2, 128, 14, 14, 128, 3, 3, 1, 1, 32),
    "resnext_32x4d_s2": (2, 128, 15, 15, 128, 3, 3, 2, 1, 32),
    "odd_cg_pad_per_group": (2, 15, 9, 9, 30, 3, 3, 1, 1, 5),
}


def _gpu_args(name, dtype, layout, gen, prologue):
    n, c, h, w, k, r, s, stride, padding, groups = GPU_CASES[name]
    p = (h + 2 * padding - r) // stride + 1
    q = (w + 2 * padding - s) // stride + 1

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to("cuda", dtype)

    x = rnd(n, c, h, w).contiguous(memory_format=layout)
    weight = rnd(k, c // groups, r, s, scale=1 / math.sqrt(c // groups * r * s))  # NCHW weight memory
    pre = ((torch.rand(c, generator=gen) + 0.5).cuda(), (torch.rand(c, generator=gen) + 0.5).cuda()) \
        if prologue else (None, None)
    return (x, weight, (torch.rand(k, generator=gen) + 0.5).cuda(), torch.randn(k, generator=gen).cuda(),
            rnd(n, k, p, q).contiguous(memory_format=CL), [stride] * 2, [padding] * 2, [1, 1], groups, True,
            *pre, 1)


@pytest.mark.parametrize("prologue", [False, True], ids=["plain", "prologue"])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(GPU_CASES))
@needs_cuda
@needs_extension
def test_gpu_runs_on_tensor_cores_and_matches_float64(name, dtype, layout, prologue, gen):
    args = _gpu_args(name, dtype, layout, gen, prologue)
    assert cuda_conv.plan(args[0].shape[1], args[1].shape[0], args[8]).kernel == "tensor_core"
    y, kernels = kernels_run(lambda: cuda_conv.conv_bn_act(*args))
    assert any("implicit_gemm_kernel" in k for k in kernels), kernels
    assert not any("direct_conv_kernel" in k for k in kernels), kernels
    assert y.is_contiguous(memory_format=layout) or y.is_contiguous()
    assert not torch.isnan(y).any()
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[dtype], f"relative error {err:.3g} > {REL_TOL[dtype]:.3g}"


@needs_cuda
@needs_extension
def test_gpu_raw_op_still_takes_narrow_channels_on_the_direct_kernel(gen):
    args = _gpu_args("stem_c3", torch.float16, CL, gen, prologue=False)
    y, kernels = kernels_run(lambda: torch.ops.resnet_kernels.conv_bn_act_cuda(*args))
    assert any("direct_conv_kernel" in k for k in kernels), kernels
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@needs_cuda
@needs_extension
def test_gpu_public_api_and_cuda_graph(gen):
    """The backend path end to end, eager and replayed from a CUDA graph (no host sync on a cache hit)."""
    from resnet_kernels.functional import conv_bn_act

    x, w = _gpu_args("resnext_32x4d", torch.float16, CL, gen, prologue=False)[:2]
    xs = _gpu_args("stem_c3", torch.float16, CL, gen, prologue=False)[:2]

    def forward():
        return (conv_bn_act(x, w, padding=1, groups=32, backend="cuda"),
                conv_bn_act(xs[0], xs[1], stride=2, padding=3, backend="cuda"))

    eager = forward()  # warm-up: fills the weight cache outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = forward()
    graph.replay()
    torch.cuda.synchronize()
    for got, want in zip(captured, eager):
        assert torch.equal(got, want)
