"""Python side of the CUDA extension: load ``resnet_kernels._C`` and register the
fake (meta) function of its op ``torch.ops.resnet_kernels.conv_bn_act_cuda``.

The C++ side names this module with ``m.set_python_module`` (torch requires the
pairing). Nothing is registered when the extension is not built; ``LOAD_ERROR``
then holds the ImportError.
"""

from __future__ import annotations

import torch

from ._args import check_conv_args, output_memory_format

#: The dtypes the CUDA kernels accept (float32 goes to 'triton' or 'reference').
CUDA_DTYPES = (torch.float16, torch.bfloat16)

try:
    from . import _C  # noqa: F401  (loading the library registers the op)
except ImportError as err:
    LOAD_ERROR: ImportError | None = err
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
