"""Helpers shared by the numeric tests: random inputs, the float64 oracle, tolerances."""

from __future__ import annotations

import math
import re

import torch

from resnet_kernels import reference

# Relative error ||out - ref|| / ||ref|| allowed per dtype, against a float64
# reference. They follow DESIGN.md's rule (at most ~2x what PyTorch/cuDNN itself
# reaches at that dtype): fp16 rounding of the output alone is ~3e-4 relative,
# bf16 ~2e-3; tf32 (Triton's default fp32 dot on GPUs) ~3e-4, plain fp32 ~1e-6.
REL_TOL = {
    torch.float64: 1e-12,
    torch.float32: 1e-3,  # allows tf32 tensor cores; exact fp32 lands near 1e-6
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64, ref64 = out.double(), ref.double()
    return ((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30)).item()


def oracle(*args, **kwargs) -> torch.Tensor:
    """The reference op evaluated in float64 on upcast inputs."""
    up = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
    return reference.conv_bn_act(*up, **kwargs)


def randn(*shape, dtype=torch.float32, device="cpu", generator=None, channels_last=False):
    t = torch.randn(*shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


# --- the tolerance rule on a GPU: at most 2x cuDNN's own error -------------------

# Error floors for the cuDNN comparison: cuDNN can be (nearly) exact on a layer
# where a different but equally valid summation order is not.
GPU_ERROR_FLOOR = {torch.float32: 2e-5, torch.float16: 5e-4, torch.bfloat16: 4e-3}


def cudnn_layer(x, w, scale, shift, residual, layer):
    """cuDNN's conv in the input dtype, then BN, add and ReLU in fp32 on its rounded output."""
    y = torch.nn.functional.conv2d(x, w, None, layer.stride, layer.padding, 1, layer.groups).float()
    y = y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    if residual is not None:
        y = y + residual.float()
    return (torch.relu(y) if layer.relu else y).to(x.dtype)


def assert_within_cudnn_error(out, x, w, scale, shift, residual, layer, ref):
    """ours <= max(2 x cuDNN's error, floor), both against the float64 `ref`."""
    ours = rel_error(out, ref)
    cudnn = rel_error(cudnn_layer(x, w, scale, shift, residual, layer), ref)
    assert ours <= max(2 * cudnn, GPU_ERROR_FLOOR[x.dtype]), f"error {ours:.3g} vs cuDNN {cudnn:.3g}"


# --- the CUDA op on a GPU: inputs, unwritten-output check, which kernels ran -------

CL = torch.channels_last


def cuda_randn(gen, *shape, dtype, memory_format=CL):
    return torch.randn(*shape, generator=gen).to("cuda", dtype).contiguous(memory_format=memory_format)


def cuda_weight(gen, k, c_per_group, r, s, dtype):
    w = torch.randn(k, c_per_group, r, s, generator=gen) / math.sqrt(c_per_group * r * s)
    return w.to("cuda", dtype).contiguous(memory_format=CL)  # KRSC memory: no repack in the op


def cuda_vector(gen, n, positive=False):
    v = torch.rand(n, generator=gen) + 0.5 if positive else torch.randn(n, generator=gen)
    return v.to("cuda")


def cuda_conv_call(shape, dtype, gen, *, affine=True, residual=True, relu=True, prologue=False):
    """Random CUDA arguments of conv_bn_act_cuda for shape = (N, C, H, W, K, R, S, stride,
    padding, groups), channels_last, and the output's (N, K, P, Q): scale and shift (affine), a
    residual of the output's shape, ReLU, a pre-activation prologue, each on request."""
    n, c, h, w, k, r, s, stride, padding, groups = shape
    x = cuda_randn(gen, n, c, h, w, dtype=dtype)
    wt = cuda_weight(gen, k, c // groups, r, s, dtype)
    p, q = (h + 2 * padding - r) // stride + 1, (w + 2 * padding - s) // stride + 1
    res = cuda_randn(gen, n, k, p, q, dtype=dtype) if residual else None
    pre = (cuda_vector(gen, c, positive=True), cuda_vector(gen, c, positive=True)) if prologue else (None, None)
    sc, sh = (cuda_vector(gen, k, positive=True), cuda_vector(gen, k)) if affine else (None, None)
    args = (x, wt, sc, sh, res, [stride] * 2, [padding] * 2, [1, 1], groups, relu, *pre, 1)
    return args, (n, k, p, q)


def into_poisoned_memory(op, args, shape):
    """Run op(*args) so that its output lands in memory just filled with NaN, and check that
    every element was written. The op's schema has no out= argument, so a NaN-filled block of
    the output's exact size is freed to an emptied caching allocator just before the call and
    the output allocation reuses it (asserted through data_ptr). Needs channels_last x and
    weight, so that the output is the op's first allocation (a split-K workspace comes after
    it; tests/test_cuda_splitk.py poisons that one too)."""
    torch.cuda.empty_cache()
    poison = torch.full((math.prod(shape),), float("nan"), dtype=args[0].dtype, device="cuda")
    address = poison.data_ptr()
    del poison
    y = op(*args)
    assert y.data_ptr() == address, "the output did not reuse the poisoned block; the NaN check would be vacuous"
    torch.cuda.synchronize()
    assert not torch.isnan(y).any(), "the kernel left elements of the output unwritten"
    return y


def wgmma_ran(kernels, bn=None, persistent=None):
    """Whether the profiler's kernel names include a wgmma kernel: the one-tile-per-CTA
    ``wgmma_conv_kernel<T, WgmmaTile<BN, ...>, ...>`` (persistent=False) or the persistent
    ``wgmma_ws_conv_kernel<T, WgmmaWsTile<BN, ...>, ...>`` (persistent=True), either when None;
    with tile width BN == bn unless bn is None."""
    width = r"\d+" if bn is None else str(bn)
    patterns = {
        False: re.compile(rf"\bwgmma_conv_kernel<.*\bWgmmaTile<\s*{width}\s*,"),
        True: re.compile(rf"\bwgmma_ws_conv_kernel<.*\bWgmmaWsTile<\s*{width}\s*,"),
    }
    kinds = [False, True] if persistent is None else [persistent]
    return any(patterns[kind].search(k) for k in kernels for kind in kinds)


def kernels_run(fn):
    """(fn(), names of the CUDA kernels fn launched), from the profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        y = fn()
        torch.cuda.synchronize()
    return y, [e.key for e in prof.key_averages()]


def record_runs(monkeypatch, fn) -> list:
    """The keyword arguments of every `fn.run` call from now on (a Triton JIT function: what a
    launch or warm-up hands it after the autotuner and the heuristics), the call still made."""
    calls = []
    run = fn.run

    def recording_run(*args, **kwargs):
        calls.append(kwargs)
        return run(*args, **kwargs)

    monkeypatch.setattr(fn, "run", recording_run)
    return calls


# --- the Triton conv kernel: a forced config, the launches it gets ------------------------------


def default_triton_switches(monkeypatch):
    """The Triton backend's environment switches at their defaults (autotuning, TMA, the
    persistent and the stream-K candidates on), for tests of what the defaults do: a GPU session
    runs the tests with RESNET_KERNELS_TRITON_AUTOTUNE=0, and a bisecting one may turn TMA, the
    persistent or the stream-K candidates off for the kernels' own tests."""
    from resnet_kernels.triton import tma, tuning

    for name in (tuning.AUTOTUNE_ENV, tuning.PERSISTENT_ENV, tuning.STREAM_K_ENV, tma.TMA_ENV):
        monkeypatch.delenv(name, raising=False)


def triton_into_poisoned_output(args, split_k=None) -> torch.Tensor:
    """The triton backend on the op's positional `args`, writing into a NaN-filled output of
    x's memory format (the shape from x, the weight and the conv geometry), so an element the
    kernel missed shows as NaN."""
    from resnet_kernels._args import output_memory_format, output_size
    from resnet_kernels.triton import conv_bn_act

    x, w, stride, padding, dilation = args[0], args[1], args[5], args[6], args[7]
    p, q = (output_size(x.shape[2 + i], w.shape[2 + i], stride[i], padding[i], dilation[i]) for i in range(2))
    out = torch.full((x.shape[0], w.shape[0], p, q), float("nan"), dtype=x.dtype, device=x.device)
    return conv_bn_act(*args, out=out.contiguous(memory_format=output_memory_format(x)), split_k=split_k)


def force_triton_config(monkeypatch, spec, tma=False, persistent=False, stream_k=False):
    """Run the conv kernel with the one (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) `spec`,
    a TMA candidate if `tma`, a persistent TMA candidate if `persistent`, a stream-K candidate
    if `stream_k`. A forced TMA, persistent or stream-K tile is what the test is about, so the
    switches that would turn it off are unset."""
    from resnet_kernels.triton import tuning
    from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel

    if tma or persistent or stream_k:
        default_triton_switches(monkeypatch)

    config = tuning._config(spec, tma=tma, persistent=persistent, stream_k=stream_k)
    monkeypatch.setattr(conv_bn_act_kernel, "configs", [config])
    monkeypatch.setattr(tuning, "remember", lambda *args: None)  # a forced config is no tuning winner


def triton_launches(monkeypatch) -> list:
    """The keyword arguments of every conv kernel launch, as they reach the JIT function (after
    the autotuner and the heuristics)."""
    from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel

    return record_runs(monkeypatch, conv_bn_act_kernel.fn.fn)
