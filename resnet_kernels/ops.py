"""The op contract: ``torch.ops.resnet_kernels.conv_bn_act``.

One torch.library custom op with a schema, a fake (meta) function so that
torch.compile(fullgraph=True) traces it, and an autograd formula. Its real
implementation validates the call and hands it to a backend (backends.py).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from . import autoselect, backends
from ._args import check_conv_args, output_memory_format
from .reference import compute_dtype, preactivation


def _vector(v: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """Per-channel vectors reach the backends contiguous, in the compute dtype
    (float32; float64 for float64 inputs, which only the reference accepts)."""
    if v is None or (v.dtype == dtype and v.is_contiguous()):  # the usual case: no dispatcher round trip
        return v
    return v.to(dtype).contiguous()


@torch.library.custom_op("resnet_kernels::conv_bn_act", mutates_args=())
def conv_bn_act(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: Optional[torch.Tensor],
    shift: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    relu: bool,
    in_scale: Optional[torch.Tensor],
    in_shift: Optional[torch.Tensor],
    residual_stride: int,
    backend: str,
) -> torch.Tensor:
    """y = relu?(scale * conv(pre(x), weight) + shift + residual); see DESIGN.md."""
    geometry = check_conv_args(
        x, weight, scale, shift, residual, stride, padding, dilation, groups, in_scale, in_shift, residual_stride
    )
    name = backends.resolve_name(backend)
    if x.shape[0] == 0:  # an empty batch, as torch's conv takes it: nothing to launch
        if name != "auto":
            backends.implementation(name, x)  # an unavailable backend still says so
        return torch.empty(geometry.out_shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))
    acc = compute_dtype(x.dtype)
    args = (
        x,
        weight,
        _vector(scale, acc),
        _vector(shift, acc),
        residual,
        geometry.stride,
        geometry.padding,
        geometry.dilation,
        groups,
        relu,
        _vector(in_scale, acc),
        _vector(in_shift, acc),
        residual_stride,
    )
    if name == "auto":
        # The reference off the GPU: the only other candidate there is Triton's interpreter
        # (TRITON_INTERPRET=1), a test vehicle, and there is no GPU clock to time it with.
        name = autoselect.choose(args, geometry) if x.is_cuda else "reference"
    return backends.implementation(name, x)(*args)


@conv_bn_act.register_fake
def _(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
      residual_stride, backend):
    geometry = check_conv_args(
        x, weight, scale, shift, residual, stride, padding, dilation, groups, in_scale, in_shift, residual_stride
    )
    return torch.empty(
        geometry.out_shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x)
    )


# --- autograd ----------------------------------------------------------------
#
# Forward:  u = pre(x);  c = conv(u, W);  z = scale*c + shift + R(residual);  y = relu?(z)
# Backward: gz = gy * [y > 0]   (y > 0 exactly where z > 0)
#           g_shift = sum gz;  g_scale = sum gz*c (c recomputed only when needed)
#           gc = gz * scale;   (g_u, g_W) = conv backward of gc
#           g_x = g_u * [pre-activation > 0] * in_scale
# Gradients are computed in float32 (float64 for float64 inputs) and returned
# in each input's dtype.


def _setup_context(ctx, inputs, output):
    (x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
     residual_stride, _backend) = inputs
    ctx.conv = (tuple(stride), tuple(padding), tuple(dilation), groups)
    ctx.relu = relu
    ctx.residual_stride = residual_stride
    ctx.residual_shape = None if residual is None else tuple(residual.shape)
    ctx.residual_dtype = None if residual is None else residual.dtype
    ctx.has_scale, ctx.has_shift = scale is not None, shift is not None
    ctx.has_in_scale, ctx.has_in_shift = in_scale is not None, in_shift is not None
    ctx.vector_dtypes = {
        "scale": None if scale is None else scale.dtype,
        "shift": None if shift is None else shift.dtype,
        "in_scale": None if in_scale is None else in_scale.dtype,
        "in_shift": None if in_shift is None else in_shift.dtype,
    }
    ctx.save_for_backward(x, weight, scale, in_scale, in_shift, output)


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=(0, 2, 3))


def _backward(ctx, grad_out):
    x, weight, scale, in_scale, in_shift, out = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.conv
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    gz = grad_out.to(acc)
    if ctx.relu:
        gz = gz * (out > 0).to(acc)
    needs = ctx.needs_input_grad
    g_x = g_w = g_scale = g_shift = g_res = g_in_scale = g_in_shift = None

    # Pre-activation, recomputed (elementwise, cheaper than saving it).
    xa = x.to(acc)
    has_pre = ctx.has_in_scale or ctx.has_in_shift
    u = preactivation(xa, in_scale, in_shift) if has_pre else xa
    wa = weight.to(acc)

    if ctx.has_shift and needs[3]:
        g_shift = _channel_sum(gz).to(ctx.vector_dtypes["shift"])
    if ctx.has_scale and needs[2]:
        c = torch.nn.functional.conv2d(u, wa, None, stride, padding, dilation, groups)
        g_scale = _channel_sum(gz * c).to(ctx.vector_dtypes["scale"])
    if ctx.residual_shape is not None and needs[4]:
        rs = ctx.residual_stride
        g_res = torch.zeros(ctx.residual_shape, dtype=acc, device=gz.device)
        g_res[:, :, ::rs, ::rs] = gz[:, : ctx.residual_shape[1]]
        g_res = g_res.to(ctx.residual_dtype)

    gc = gz * scale.to(acc).view(1, -1, 1, 1) if ctx.has_scale else gz
    need_u = needs[0] or needs[10] or needs[11]
    if need_u or needs[1]:
        g_u, g_w_acc, _ = torch.ops.aten.convolution_backward(
            gc, u, wa, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
            [need_u, needs[1], False],
        )
        if needs[1]:
            g_w = g_w_acc.to(weight.dtype)
        if need_u:
            if has_pre:
                pre = xa
                if ctx.has_in_scale:
                    pre = pre * in_scale.to(acc).view(1, -1, 1, 1)
                if ctx.has_in_shift:
                    pre = pre + in_shift.to(acc).view(1, -1, 1, 1)
                g_pre = g_u * (pre > 0).to(acc)
                if ctx.has_in_shift and needs[11]:
                    g_in_shift = _channel_sum(g_pre).to(ctx.vector_dtypes["in_shift"])
                if ctx.has_in_scale and needs[10]:
                    g_in_scale = _channel_sum(g_pre * xa).to(ctx.vector_dtypes["in_scale"])
                g_u = g_pre * in_scale.to(acc).view(1, -1, 1, 1) if ctx.has_in_scale else g_pre
            if needs[0]:
                g_x = g_u.to(x.dtype)
    return (g_x, g_w, g_scale, g_shift, g_res, None, None, None, None, None, g_in_scale, g_in_shift, None, None)


conv_bn_act.register_autograd(_backward, setup_context=_setup_context)
