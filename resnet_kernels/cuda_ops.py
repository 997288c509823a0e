"""Python side of the CUDA extension: load ``resnet_kernels._C`` and register the
fake (meta) function of its op ``torch.ops.resnet_kernels.conv_bn_act_cuda``.

The C++ side names this module with ``m.set_python_module`` (torch requires the
pairing). Nothing is registered when the extension is not built or cannot be
loaded; ``LOAD_ERROR`` then holds the exception. A library built against another
torch (e.g. a ``_C*.so`` left in the tree by a different venv) fails with an
undefined-symbol ImportError; OSError (broken/foreign file) and RuntimeError (op
registration refused) are caught too, so importing the package never fails
because of the extension.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import torch

from ._args import check_conv_args, output_memory_format

#: The dtypes the CUDA kernels accept (float32 goes to 'triton' or 'reference').
CUDA_DTYPES = (torch.float16, torch.bfloat16)

try:
    # import_module (not `from . import _C`): a missing library raises ModuleNotFoundError,
    # which backends.cuda_extension_error reports as "not built".
    importlib.import_module("._C", __package__)  # loading the library registers the op

    torch.ops.resnet_kernels.conv_bn_act_cuda.default  # noqa: B018  (registered by the library?)
except (ImportError, OSError, RuntimeError, AttributeError) as err:
    LOAD_ERROR: Exception | None = err
else:
    LOAD_ERROR = None

    @torch.library.register_fake("resnet_kernels::conv_bn_act_cuda")
    def _(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
          residual_stride):
        if x.dtype not in CUDA_DTYPES:
            raise RuntimeError(
                f"conv_bn_act_cuda: supports float16 and bfloat16 inputs; x is {x.dtype}. "
                "For float32 use backend='triton' or backend='reference'"
            )
        geometry = check_conv_args(
            x, weight, scale, shift, residual, stride, padding, dilation, groups, in_scale, in_shift,
            residual_stride, dtypes=CUDA_DTYPES,
        )
        return torch.empty(geometry.out_shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))


class CudaPlan(NamedTuple):
    """What the C++ op launches for one call (``torch.ops.resnet_kernels.conv_plan_cuda``;
    ConvPlan in csrc/kernels/launch.h)."""

    kernel: str  # 'direct', 'mma' (mma.sync implicit GEMM) or 'wgmma'
    tile_m: int  # CTA tile of the tensor-core kernel (0 for 'direct'): mma 64x64 or 128x128,
    tile_n: int  # wgmma 128x64, 128x128 or 128x256 (RESNET_KERNELS_CUDA_KERNEL=wgmma_n64/_n128/_n256)
    split: int  # k splits of the mma kernel (split-K); 1 = none
    workspace_bytes: int  # fp32 partials the op allocates per call (split * M * K * 4, or 0)
    vector_output: bool  # 16-byte output stores (staged epilogue of mma or wgmma, or the split-K reduce)
    vector_residual: bool  # 16-byte residual loads
    loads: str  # wgmma operand loads: 'cp.async', 'tma_b' (weights by TMA), 'tma_ab' (both by TMA) or
    #             'tma_im2col' (both by TMA, the activations in im2col mode)
    persistent: bool  # wgmma: the persistent warp-specialised kernel (operands, residual and output by TMA)


def conv_plan(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
              residual_stride) -> CudaPlan:
    """The plan ``conv_bn_act_cuda`` would use for these arguments now (same arguments; CUDA
    tensors; RESNET_KERNELS_CUDA_SPLIT_K, RESNET_KERNELS_CUDA_KERNEL, RESNET_KERNELS_CUDA_TMA and
    RESNET_KERNELS_CUDA_PERSISTENT are read as by the op)."""
    raw = torch.ops.resnet_kernels.conv_plan_cuda(
        x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale, in_shift,
        residual_stride,
    )
    kernel, tile_m, tile_n, split, workspace, vector_output, vector_residual, loads, persistent = raw
    return CudaPlan(("direct", "mma", "wgmma")[kernel], tile_m, tile_n, split, workspace, bool(vector_output),
                    bool(vector_residual), ("cp.async", "tma_b", "tma_ab", "tma_im2col")[loads], bool(persistent))
