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

import os
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


def _output(out: Optional[torch.Tensor], x: torch.Tensor, shape: tuple, memory_format: torch.memory_format
            ) -> torch.Tensor:
    """`out`, checked, or a new output of x's dtype and device in `memory_format` (x's:
    output_memory_format)."""
    if out is None:
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format)
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
    plan = LaunchPlan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                      in_shift, residual_stride, out, split_k)
    return plan.args(x, weight, scale, shift, residual, in_scale, in_shift, out), plan.kernel_groups


class LaunchPlan:
    """What kernel_args derives from a call's shapes, strides, dtypes, flags, device and switches:
    every kernel argument but the tensors, the grid and the buffers to allocate. `args` fills in
    one call's tensors.

    A plan is the same for every call of the same signature (plan_key), so the op keeps one per
    signature (_plans) and a repeated call, every layer of every forward, only fills in its
    tensors: this is most of the host time of a call (benchmarks/NOTES.md, "Host time per call").
    """

    __slots__ = ("constants", "groups", "kernel_groups", "merge", "run", "out_shape", "out_format", "tap", "splits",
                 "grid", "remembered")

    def __init__(self, x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                 in_shift, residual_stride, out, split_k):
        n, _, h, w = x.shape
        k, c_per_group, r, s = weight.shape
        p = output_size(h, r, stride[0], padding[0], dilation[0])
        q = output_size(w, s, stride[1], padding[1], dilation[1])
        merge, kernel_groups, c_kernel, k_kernel = _merged_groups(groups, c_per_group, k)
        if kernel_groups > _MAX_GRID_GROUPS:
            raise ValueError(
                f"groups={groups} is more than the triton backend can launch ({_MAX_GRID_GROUPS} after merging)"
            )
        self.out_shape, self.out_format = (n, k, p, q), output_memory_format(x)
        # The output's strides: `out`'s, or those of the tensor _output will allocate (a meta
        # tensor: no memory).
        out_like = _output(out, x, self.out_shape, self.out_format) if out is not None else torch.empty(
            self.out_shape, device="meta", memory_format=self.out_format)
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
        res_strides = (0, 0, 0, 0) if residual is None else residual.stride()
        self.groups, self.merge, self.run, self.kernel_groups, self.splits = groups, merge, run, kernel_groups, split_k
        self.tap = (tap_table(r, s, c_kernel, dilation[0], dilation[1], x.device)
                    if tuning.may_walk_flat(c_kernel) and not run else None)
        self.constants = dict(
            ROW_RUN=run > 0, RUN=max(run, 1),
            M=n * p * q, H=h, W=w, P=p, Q=q, C=c_kernel, K=k_kernel,
            stride_h=stride[0], stride_w=stride[1], pad_h=padding[0], pad_w=padding[1],
            dil_h=dilation[0], dil_w=dilation[1],
            sxn=x.stride(0), sxc=x.stride(1), sxh=x.stride(2), sxw=sxw,
            son=out_like.stride(0), sok=out_like.stride(1), sop=out_like.stride(2),
            soq=out_like.stride(3),
            srn=res_strides[0], src=res_strides[1], srh=res_strides[2], srw=res_strides[3],
            res_channels=0 if residual is None else residual.shape[1], res_step=residual_stride,
            SPLIT_K=split_k,
            R=r, S=s,
            IS_GEMM=r == 1 and s == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) and _dense_rows(x),
            HAS_SCALE=scale is not None, HAS_SHIFT=shift is not None, HAS_RES=residual is not None,
            RELU=bool(relu), OUT_DENSE=_dense_rows(out_like),
            RES_DENSE=residual is not None and residual_stride == 1 and _dense_rows(residual),
            HAS_IN_SCALE=in_scale is not None, HAS_IN_SHIFT=in_shift is not None,
            UPCAST=tuning.interpreting() and x.dtype == torch.bfloat16,
            DOT_PRECISION="tf32" if x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee",
        )
        # The decisions that look at the operands themselves (TMA: alignment of x and the packed
        # weight; stream-K: the device), made on the call's tensors.
        probe = {**self.constants, "x_ptr": x, "w_ptr": self._packed(weight)}
        self.constants["TMA_OK"] = tma.applies(probe)
        self.constants["PERSISTENT_OK"] = tuning.persistent_allowed()
        self.constants["STREAM_K_OK"] = tuning.stream_k_allowed({**probe, **self.constants})
        self.grid = _grid(self.constants["M"], k_kernel, split_k, kernel_groups, x.device)
        self.remembered = False

    def _packed(self, weight: torch.Tensor) -> torch.Tensor:
        return packed_weight(weight, self.groups, self.merge, self.run)

    def args(self, x, weight, scale, shift, residual, in_scale, in_shift, out=None) -> dict:
        """The kernel arguments of one call of this plan's signature: the constants and the call's
        tensors (absent optional ones are x, never read: their HAS_* flag is off), a new output
        unless `out` is given, and the workspaces the launch needs."""
        out = _output(out, x, self.out_shape, self.out_format)
        args = dict(self.constants)
        args.update(
            x_ptr=x, w_ptr=self._packed(weight), out_ptr=out,
            scale_ptr=x if scale is None else scale, shift_ptr=x if shift is None else shift,
            res_ptr=x if residual is None else residual,
            in_scale_ptr=x if in_scale is None else in_scale, in_shift_ptr=x if in_shift is None else in_shift,
            tap_ptr=x if self.tap is None else self.tap, ws_ptr=x, flags_ptr=x,
        )
        if self.splits > 1:  # (split, pixel, output channel) fp32 partial sums
            args["ws_ptr"] = torch.empty((self.splits, args["M"], self.out_shape[1]), dtype=torch.float32,
                                         device=x.device)
        if self.constants["STREAM_K_OK"]:
            _stream_k_buffers(args, self.kernel_groups)
        return args


def plan_key(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
             residual_stride) -> tuple:
    """Everything a LaunchPlan depends on, for a call that leaves the output and the split to the
    backend: shapes, strides, dtypes and device (the autotuner's key has every tensor's dtype, so
    a plan does too); the 16-byte alignment of x and the weight (TMA loads need it; the packed
    weight is the weight itself or a fresh tensor, so the weight's alignment and strides settle
    its alignment); which optional tensors are present; the conv's hyper-parameters; torch's TF32
    switch and this backend's switches. Not the data pointers: the plan holds no tensor of a
    call."""
    return (
        x.shape, x.stride(), x.dtype, x.device, x.data_ptr() % 16,
        weight.shape, weight.stride(), weight.dtype, weight.data_ptr() % 16,
        _dtype(scale), _dtype(shift), _dtype(in_scale), _dtype(in_shift),
        None if residual is None else (residual.shape, residual.stride(), residual.dtype),
        tuple(stride), tuple(padding), tuple(dilation), groups, bool(relu), residual_stride,
        torch.backends.cudnn.allow_tf32, _switches(),
    )


def _dtype(t: Optional[torch.Tensor]):
    return None if t is None else t.dtype


def _switches() -> tuple:
    """The environment switches the plan's decisions read (TMA_OK, PERSISTENT_OK, STREAM_K_OK)."""
    env = os.environ
    return env.get(tma.TMA_ENV), env.get(tuning.PERSISTENT_ENV), env.get(tuning.STREAM_K_ENV)


# Plans of the call signatures seen (plan_key -> LaunchPlan). A process that keeps changing shapes
# (e.g. every batch size) starts over past _MAX_PLANS rather than grow without bound. A plan also
# depends on the GPU's SM count (the split) and the module-level tables of tuning.py, which are
# constant in a process; a test that patches them calls clear_plans.
_plans: dict = {}
_MAX_PLANS = 4096


def clear_plans() -> None:
    """Forget every launch plan (the next call of each signature builds its plan again)."""
    _plans.clear()


def _plan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
          residual_stride) -> LaunchPlan:
    key = plan_key(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                   in_shift, residual_stride)
    plan = _plans.get(key)
    if plan is None:
        plan = LaunchPlan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                          in_shift, residual_stride, None, None)
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        _plans[key] = plan
    return plan


def _stream_k_buffers(args: dict, kernel_groups: int) -> None:
    """The workspace and flags a stream-K launch of any stream-K candidate of the kernel's
    config list may need (the autotuner passes one set of arguments to all, so sized for the
    largest): one fp32 partial tile and one int32 flag per program (8.7 MB and 264 flags for
    the Hopper candidates on 132 SMs). The flags start at 0 and every launch leaves them 0
    (conv_kernel._stream_k_collect), which also makes them reusable across the autotuner's
    timing runs. Nothing is allocated when no stream-K candidate is listed. Sized per call,
    not per plan: the config list is the autotuner's, not the call's."""
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

    split_k forces the split of the reduction (see kernel_args); None chooses it. A call that
    gives neither uses the plan of its signature (_plan).
    """
    if out is None and split_k is None:
        plan = _plan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                     in_shift, residual_stride)
    else:
        plan = LaunchPlan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                          in_shift, residual_stride, out, split_k)
    args = plan.args(x, weight, scale, shift, residual, in_scale, in_shift, out)
    if tuning.interpreting():
        _interpreter_compat.install()
    # Triton launches on the current device and its current stream, not on the tensors': make
    # it x's, as torch's own ops do (x on cuda:1 while cuda:0 is current; a no-op on the CPU).
    with torch.cuda.device_of(x):
        conv_bn_act_kernel[plan.grid](**args)
        if plan.splits > 1:
            _reduce_splits(args, plan.kernel_groups * args["K"])
    if not plan.remembered:
        # A winner is recorded once per plan (it cannot change: the autotuner keeps it per key).
        plan.remembered = tuning.remember(conv_bn_act_kernel, args)
    return args["out_ptr"]


def _conv_grid(args: dict, kernel_groups: int):
    """The launch grid of conv_bn_act_kernel for kernel arguments `args` (see _grid)."""
    return _grid(args["M"], args["K"], args["SPLIT_K"], kernel_groups, args["x_ptr"].device)


def _grid(m: int, k: int, splits: int, kernel_groups: int, device):
    """The launch grid of conv_bn_act_kernel as a function of the autotuned tile and the decided
    flags: (M tiles * N tiles, groups, splits), for the persistent kernel
    (tuning.persistent_programs, groups, 1), for stream-K (tuning.stream_k_programs, groups, 1).
    Holds no tensor (a plan keeps it)."""

    def grid(meta):
        if meta["STREAM_K"]:
            return (tuning.stream_k_programs(kernel_groups, meta["BLOCK_M"], meta["BLOCK_N"], device), kernel_groups, 1)
        tiles = tuning.cdiv(m, meta["BLOCK_M"]) * tuning.cdiv(k, meta["BLOCK_N"])
        if meta["PERSISTENT"]:
            programs = tuning.persistent_programs(tiles, kernel_groups, meta["BLOCK_M"], meta["BLOCK_N"], device)
            return (programs, kernel_groups, 1)
        return (tiles, kernel_groups, splits)

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
