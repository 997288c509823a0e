"""Host side of the fused conv kernel: output buffer, weight packing, launch.

Called by the op layer with validated arguments (see resnet_kernels/_args.py).
Inputs are used with whatever strides they have (no copies): the kernel
indexes x, the residual and the output through their strides, so NCHW,
channels_last and sliced tensors are all correct; channels_last is the fast
layout. The output has x's memory format (channels_last iff x is).

fp32 inputs use TF32 tensor cores exactly when torch.backends.cudnn.allow_tf32
is set (torch's default, and the switch torch's own convolutions obey), else
full-precision fp32 ("ieee") dots. Accumulation is fp32 for every dtype.

Grids too small for the GPU (late layers at small batch) split the reduction
(tuning.split_k): the conv kernel writes fp32 partials to a workspace taken
from the caching allocator and a second kernel sums them and runs the epilogue.
Grids of a few ragged waves get stream-K candidates (tuning.stream_k_allowed):
their partial tiles and flags are a workspace and a zeroed flag array per call.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton

from .._args import output_memory_format, output_size
from . import _interpreter_compat, tma, tuning
from .conv_kernel import conv_bn_act_kernel, splitk_epilogue_kernel
from .taps import tap_table
from .weights import merge_factor, packed_weight

# CUDA allows at most 65535 blocks in grid dimension y, which indexes groups.
_MAX_GRID_GROUPS = 65535


def _dense_rows(x: torch.Tensor) -> bool:
    """True when pixel (n, h, w) of x starts at ((n*H + h)*W + w) * stride_w: x as an (N*H*W, C) matrix."""
    n, _, h, w = x.shape
    s_n, _, s_h, s_w = x.stride()
    return (s_h == w * s_w or h == 1) and (s_n == h * w * s_w or n == 1)


def _output(out: Optional[torch.Tensor], x: torch.Tensor, shape: tuple) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    if out.dtype != x.dtype or out.device != x.device:
        raise TypeError(f"out must be {x.dtype} on {x.device} like x, got {out.dtype} on {out.device}")
    if not (out.is_contiguous() or out.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError("out must be contiguous or channels_last (every element written exactly once)")
    return out


def _row_run(x: torch.Tensor, c: int, s: int, groups: int, dilation: Sequence[int], prologue: bool) -> int:
    """RUN of the kernel's ROW_RUN walk (S*C rounded up to a power of two, at least 16), or 0
    where it does not apply: channel counts some candidate walks tap-aligned (tuning.no_tile_divides),
    several groups, a pre-activation prologue, horizontal dilation, or x whose pixels are not
    C contiguous values (channels_last: channel stride 1, pixel stride C)."""
    if not tuning.no_tile_divides(c) or groups != 1 or prologue or dilation[1] != 1:
        return 0
    if x.stride(1) != 1 or (x.shape[3] > 1 and x.stride(3) != c):
        return 0
    return max(16, triton.next_power_of_2(s * c))


def _merged_groups(groups: int, c_per_group: int, k: int) -> tuple[int, int, int, int]:
    """(merge factor, groups, input and output channels per group) as the kernel sees them."""
    merge = merge_factor(groups, c_per_group, k // groups)
    return merge, groups // merge, c_per_group * merge, (k // groups) * merge


def default_split(pixels: int, k: int, c_per_group: int, r: int, s: int, groups: int, device) -> int:
    """The split of the reduction a call picks by itself (tuning.split_k on the merged groups):
    `pixels` = N*P*Q output pixels, k output channels, an r x s filter over c_per_group channels."""
    _, kernel_groups, c_kernel, k_kernel = _merged_groups(groups, c_per_group, k)
    return tuning.split_k(pixels, k_kernel, kernel_groups, r * s * c_kernel, tuning.num_sms(device))


def kernel_args(
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
    out: Optional[torch.Tensor] = None,
    split_k: Optional[int] = None,
) -> tuple[dict, int]:
    """The kernel's arguments for one call (all but the tile sizes) and its number of (merged) groups.

    split_k: how many ranges the reduction is split into; None picks it from the
    grid size and the GPU (tuning.split_k), 1 never splits.
    """
    n, _, h, w = x.shape
    k, c_per_group, r, s = weight.shape
    p = output_size(h, r, stride[0], padding[0], dilation[0])
    q = output_size(w, s, stride[1], padding[1], dilation[1])
    merge, kernel_groups, c_kernel, k_kernel = _merged_groups(groups, c_per_group, k)
    if kernel_groups > _MAX_GRID_GROUPS:
        raise ValueError(
            f"groups={groups} is more than the triton backend can launch ({_MAX_GRID_GROUPS} after merging)"
        )
    out = _output(out, x, (n, k, p, q))
    run = _row_run(x, c_kernel, s, groups, dilation, in_scale is not None or in_shift is not None)
    # The ROW_RUN walk reads a tap row's S*C values as one run starting at pixel iw0, so it takes
    # the pixel stride to be C. A width-1 x may carry any stride there (a size-1 dimension's stride
    # is arbitrary: (N, C, H, 1) NCHW has stride 1); its one pixel sits at offset 0 with either
    # value, so passing C is exact and keeps the run's arithmetic right for the padded taps.
    sxw = c_kernel if run else x.stride(3)
    if split_k is None:
        split_k = default_split(n * p * q, k, c_per_group, r, s, groups, x.device)
    if not isinstance(split_k, int) or split_k < 1:
        raise ValueError(f"split_k must be a positive int, got {split_k!r}")
    # (split, pixel, output channel) fp32 partial sums; absent when not splitting.
    ws = torch.empty((split_k, n * p * q, k), dtype=torch.float32, device=x.device) if split_k > 1 else None
    res_strides = (0, 0, 0, 0) if residual is None else residual.stride()
    # Absent optional tensors: the kernel never reads the pointer (its HAS_* flag is off).
    args = dict(
        x_ptr=x, w_ptr=packed_weight(weight, groups, merge, run), out_ptr=out,
        scale_ptr=x if scale is None else scale, shift_ptr=x if shift is None else shift,
        res_ptr=x if residual is None else residual,
        in_scale_ptr=x if in_scale is None else in_scale, in_shift_ptr=x if in_shift is None else in_shift,
        ws_ptr=x if ws is None else ws,
        tap_ptr=tap_table(r, s, c_kernel, dilation[0], dilation[1], x.device)
        if tuning.may_walk_flat(c_kernel) and not run else x,
        ROW_RUN=run > 0, RUN=max(run, 1),
        M=n * p * q, H=h, W=w, P=p, Q=q, C=c_kernel, K=k_kernel,
        stride_h=stride[0], stride_w=stride[1], pad_h=padding[0], pad_w=padding[1],
        dil_h=dilation[0], dil_w=dilation[1],
        sxn=x.stride(0), sxc=x.stride(1), sxh=x.stride(2), sxw=sxw,
        son=out.stride(0), sok=out.stride(1), sop=out.stride(2), soq=out.stride(3),
        srn=res_strides[0], src=res_strides[1], srh=res_strides[2], srw=res_strides[3],
        res_channels=0 if residual is None else residual.shape[1], res_step=residual_stride,
        SPLIT_K=split_k,
        R=r, S=s,
        IS_GEMM=r == 1 and s == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) and _dense_rows(x),
        HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None, HAS_RES=residual is not None, RELU=bool(relu),
        OUT_DENSE=_dense_rows(out),
        RES_DENSE=residual is not None and residual_stride == 1 and _dense_rows(residual),
        HAS_IN_SCALE=in_scale is not None, HAS_IN_SHIFT=in_shift is not None,
        UPCAST=tuning.interpreting() and x.dtype == torch.bfloat16,
        DOT_PRECISION="tf32" if x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee",
    )
    args["TMA_OK"] = tma.applies(args)
    args["PERSISTENT_OK"] = tuning.persistent_allowed()
    args["STREAM_K_OK"] = tuning.stream_k_allowed(args)
    args["flags_ptr"] = x
    if args["STREAM_K_OK"]:
        _stream_k_buffers(args, kernel_groups)
    return args, kernel_groups


def _stream_k_buffers(args: dict, kernel_groups: int) -> None:
    """The workspace and flags a stream-K launch of any stream-K candidate of the kernel's
    config list may need (the autotuner passes one set of arguments to all, so sized for the
    largest): one fp32 partial tile and one int32 flag per program (8.7 MB and 264 flags for
    the Hopper candidates on 132 SMs). The flags start at 0 and every launch leaves them 0
    (conv_kernel._stream_k_collect), which also makes them reusable across the autotuner's
    timing runs. Nothing is allocated when no stream-K candidate is listed."""
    device = args["x_ptr"].device
    programs, partials = 0, 0
    for cfg in conv_bn_act_kernel.configs:
        if cfg.kwargs["STREAM_K"]:
            n = kernel_groups * tuning.stream_k_programs(kernel_groups, cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"],
                                                         device)
            programs = max(programs, n)
            partials = max(partials, n * cfg.kwargs["BLOCK_M"] * cfg.kwargs["BLOCK_N"])
    if programs:
        args["ws_ptr"] = torch.empty(partials, dtype=torch.float32, device=device)
        args["flags_ptr"] = torch.zeros(programs, dtype=torch.int32, device=device)


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
    out: Optional[torch.Tensor] = None,
    split_k: Optional[int] = None,
) -> torch.Tensor:
    """The triton backend of resnet_kernels.ops.conv_bn_act; `out`, if given, receives the result.

    split_k forces the split of the reduction (see kernel_args); None chooses it.
    """
    args, kernel_groups = kernel_args(
        x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
        residual_stride, out, split_k,
    )

    grid = _conv_grid(args, kernel_groups)
    if tuning.interpreting():
        _interpreter_compat.install()
    # Triton launches on the current device and its current stream, not on the tensors': make
    # it x's, as torch's own ops do (x on cuda:1 while cuda:0 is current; a no-op on the CPU).
    with torch.cuda.device_of(x):
        conv_bn_act_kernel[grid](**args)
        if args["SPLIT_K"] > 1:
            _reduce_splits(args, kernel_groups * args["K"])
    tuning.remember(conv_bn_act_kernel, args)
    return args["out_ptr"]


def _conv_grid(args: dict, kernel_groups: int):
    """The launch grid of conv_bn_act_kernel as a function of the autotuned tile and the decided
    flags: (M tiles * N tiles, groups, splits), for the persistent kernel
    (tuning.persistent_programs, groups, 1), for stream-K (tuning.stream_k_programs, groups, 1)."""

    def grid(meta):
        tiles = tuning.cdiv(args["M"], meta["BLOCK_M"]) * tuning.cdiv(args["K"], meta["BLOCK_N"])
        if meta["STREAM_K"]:
            programs = tuning.stream_k_programs(kernel_groups, meta["BLOCK_M"], meta["BLOCK_N"], args["x_ptr"].device)
            return (programs, kernel_groups, 1)
        if meta["PERSISTENT"]:
            programs = tuning.persistent_programs(tiles, kernel_groups, meta["BLOCK_M"], meta["BLOCK_N"],
                                                  args["x_ptr"].device)
            return (programs, kernel_groups, 1)
        return (tiles, kernel_groups, args["SPLIT_K"])

    return grid


def _reduce_splits(args: dict, channels: int) -> None:
    """out = epilogue(sum of the split-K partials): a memory-bound pass over (M, channels) fp32 tiles."""
    grid, launch = _reduce_launch(args, channels)
    splitk_epilogue_kernel[grid](**{name: args[name] for name in _EPILOGUE_ARGS}, **launch)


def _reduce_launch(args: dict, channels: int) -> tuple:
    """The grid and the launch-only arguments of splitk_epilogue_kernel for one split call."""
    block = 32 if tuning.interpreting() else 64
    grid = (tuning.cdiv(args["M"], block), tuning.cdiv(channels, block))
    halves = tuning.epilogue_halves({"BLOCK_M": block, "BLOCK_N": block, "num_warps": 4})
    return grid, dict(KT=channels, ws_split_stride=args["M"] * channels, BLOCK_M=block, BLOCK_N=block,
                      EPILOGUE_HALVES=halves, num_warps=4)


# The arguments splitk_epilogue_kernel shares with conv_bn_act_kernel.
_EPILOGUE_ARGS = (
    "ws_ptr", "out_ptr", "scale_ptr", "shift_ptr", "res_ptr", "M", "P", "Q", "SPLIT_K",
    "son", "sok", "sop", "soq", "srn", "src", "srh", "srw", "res_channels", "res_step",
    "HAS_SCALE", "HAS_SHIFT", "HAS_RES", "RELU", "OUT_DENSE", "RES_DENSE",
)
