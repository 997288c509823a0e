"""TMA (tensor-descriptor) loads for the conv kernel's plain-GEMM walk (IS_GEMM), Hopper and later.

On the IS_GEMM walk (1x1, stride 1, no padding, dense rows) A is x viewed as an
(M, all channels) matrix and B the packed weights viewed as a (G*C, K) matrix:
both are plain 2-D tiles, which is what a TMA copy moves. With pointer loads
every thread computes addresses and issues cp.async for its share of each
tile (~100 SASS instructions per k tile, see benchmarks/NOTES.md); a TMA copy
is one instruction issued by one thread, so the warps are left to the wgmma
and the epilogue. The autotuner gets TMA candidates in addition to the pointer
ones (tuning._HOPPER_TMA) and keeps them only where they win.

Descriptors are made on the host (triton.tools.tensor_descriptor), not in the
kernel (tl.make_tensor_descriptor):
- a device-side descriptor is written by every program to a global scratch
  buffer (128 bytes, plus a fence before use) and needs a global allocator
  (triton.set_allocator); a host one is encoded once per launch by Triton's
  launcher (cuTensorMapEncodeTiled, a few microseconds of host time) and
  passed as a kernel parameter;
- the block shape of a host descriptor is part of the kernel's signature, so
  it has to follow the autotune config. It is made by a triton.heuristics
  function from the config's BLOCK_M/BLOCK_N/BLOCK_K (a_descriptor, b_descriptor),
  not by a config pre_hook: the autotuner's `warmup` (warmup.py) does not run
  pre_hooks, but the heuristics run in a warm-up exactly as in a launch, so
  both reach the same specialisation and cache key.
Both Triton 3.6 and 3.8 take host descriptors, in the compiler and in the
interpreter (TRITON_INTERPRET=1 emulates the load, zero fill included).

When the TMA loads apply (`applies`, the host's TMA_OK; the config's BLOCK_K
dividing C is checked per config in tuning.tma_loads):
- the IS_GEMM walk and not ROW_RUN (which takes 1x1 convs of narrow C);
- fp16 or bf16, the dtypes the network runs in. fp32 stays on the pointer
  walk: tf32 wgmma reads only K-major B tiles from shared memory, and B is
  N-major here (not tried with TMA);
- no pre-activation prologue: it has to bring the A tile into registers,
  which is the work TMA saves (and wgmma then reads A from registers);
- x's channel stride 1, its base 16-byte aligned and its row stride a
  multiple of 16 bytes (TMA's rules for a global address and a stride) and
  at least all channels (overlapping rows are left to the pointer walk); the
  packed weights' base aligned and their row (K elements) a multiple of 16
  bytes; 0 < M < 2^31 (TMA coordinates are int32);
- a CUDA GPU of compute capability >= 9.0, or the interpreter (which can only
  be made to take the TMA walk by forcing a config: its one default config
  has pointer loads);
- RESNET_KERNELS_TRITON_TMA is not "0". That switch turns the TMA candidates
  off (read per call: TMA_OK is part of the autotune key), for measuring the
  pointer-only autotune space against the full one.
Rows past M and columns past K fall outside the descriptors' shapes, which
TMA fills with zeros; the epilogue masks them as before. Channel columns never
pass the end: BLOCK_K divides C on this walk, and each group's columns
[group*C, group*C + C) lie inside x's channels and the weights' rows.
"""

from __future__ import annotations

import functools
import os

import torch
from triton.tools.tensor_descriptor import TensorDescriptor

from . import tuning

_DTYPES = (torch.float16, torch.bfloat16)
_ALIGN = 16  # bytes: TMA's alignment of a global base address and of every stride but the innermost

TMA_ENV = "RESNET_KERNELS_TRITON_TMA"


@functools.lru_cache(maxsize=None)
def device_has_tma(device: torch.device) -> bool:
    """A CUDA GPU of compute capability 9.0 or more (TMA came with Hopper)."""
    if device.type != "cuda" or torch.version.hip:
        return False
    return torch.cuda.get_device_capability(device) >= (9, 0)


def _aligned(t: torch.Tensor) -> bool:
    return t.data_ptr() % _ALIGN == 0


def applies(args: dict) -> bool:
    """Whether the conv kernel may load A and B by TMA for the call with kernel arguments `args`
    (conv.kernel_args): the kernel's TMA_OK. Not switched off, the device has TMA and
    `operands_allow`."""
    if os.environ.get(TMA_ENV, "1") == "0":
        return False
    return (tuning.interpreting() or device_has_tma(args["x_ptr"].device)) and operands_allow(args)


def operands_allow(args: dict) -> bool:
    """The call's walk, dtype and tensors allow TMA loads (conditions: the module docstring); the
    device aside, which aot.py takes to be the sm_90 it compiles for."""
    if not args["IS_GEMM"] or args["ROW_RUN"] or args["HAS_IN_SCALE"] or args["HAS_IN_SHIFT"]:
        return False
    x, w = args["x_ptr"], args["w_ptr"]
    if x.dtype not in _DTYPES:
        return False
    item = x.element_size()
    row_stride = args["sxw"]  # the IS_GEMM walk reads pixel m at m * sxw
    return (args["sxc"] == 1 and _aligned(x) and row_stride >= x.shape[1] and row_stride * item % _ALIGN == 0
            and _aligned(w) and args["K"] * item % _ALIGN == 0 and 0 < args["M"] < 2**31)


def a_descriptor(args: dict):
    """x as the (M, all channels) A matrix in BLOCK_M x BLOCK_K boxes; x itself (unused) when the
    launch does not load by TMA."""
    x = args["x_ptr"]
    if not args["TMA"]:
        return x
    return TensorDescriptor(x, [args["M"], x.shape[1]], [args["sxw"], 1], [args["BLOCK_M"], args["BLOCK_K"]])


def b_descriptor(args: dict):
    """The packed 1x1 weights (G, 1, 1, C, K) as the (G*C, K) B matrix in BLOCK_K x BLOCK_N boxes;
    x (unused) when the launch does not load by TMA."""
    if not args["TMA"]:
        return args["x_ptr"]
    w, K = args["w_ptr"], args["K"]
    return TensorDescriptor(w, [w.numel() // K, K], [K, 1], [args["BLOCK_K"], args["BLOCK_N"]])
