"""The registration of the CUDA extension's op, checked without a GPU: the
module imports, the schema matches the Python op, CPU tensors get a clear
error, and the fake function gives the real op's shape and memory format."""

import pytest
import torch
from conftest import needs_extension
from torch._subclasses.fake_tensor import FakeTensorMode

import resnet_kernels.ops  # noqa: F401  (defines torch.ops.resnet_kernels.conv_bn_act)
from resnet_kernels import cuda_ops
from resnet_kernels._args import output_memory_format

pytestmark = needs_extension


def _op():
    return torch.ops.resnet_kernels.conv_bn_act_cuda.default


def test_extension_imports_and_registers_the_op():
    import resnet_kernels._C  # noqa: F401

    assert cuda_ops.LOAD_ERROR is None
    assert hasattr(torch.ops.resnet_kernels, "conv_bn_act_cuda")


def test_schema_is_the_python_op_without_backend():
    cuda = [(a.name, str(a.type)) for a in _op()._schema.arguments]
    python = [(a.name, str(a.type)) for a in torch.ops.resnet_kernels.conv_bn_act.default._schema.arguments]
    assert python[-1][0] == "backend"
    assert cuda == python[:-1]
    assert [str(r.type) for r in _op()._schema.returns] == ["Tensor"]


def _args(x, weight, residual=None, stride=1, padding=1, groups=1, residual_stride=1):
    return (x, weight, None, None, residual, [stride] * 2, [padding] * 2, [1, 1], groups, True, None, None,
            residual_stride)


def test_cpu_tensors_raise_a_clear_error():
    x, w = torch.randn(1, 8, 5, 5, dtype=torch.float16), torch.randn(8, 8, 3, 3, dtype=torch.float16)
    with pytest.raises(NotImplementedError, match="x must be a CUDA tensor.*'reference' or 'triton'"):
        _op()(*_args(x, w))


# (x shape, x layout, weight shape, stride, padding, groups, residual shape, residual_stride)
FAKE_CASES = {
    "nchw": ((2, 16, 9, 9), "contiguous", (32, 16, 3, 3), 2, 1, 1, None, 1),
    "channels_last": ((2, 16, 9, 9), "channels_last", (32, 16, 3, 3), 2, 1, 1, None, 1),
    "channels_last_c1_is_contiguous": ((2, 1, 9, 9), "channels_last", (8, 1, 3, 3), 1, 1, 1, None, 1),
    "grouped_residual": ((1, 64, 8, 8), "channels_last", (64, 2, 3, 3), 1, 1, 32, (1, 64, 8, 8), 1),
    "option_a": ((2, 16, 8, 8), "channels_last", (32, 16, 3, 3), 2, 1, 1, (2, 16, 8, 8), 2),
}


@pytest.mark.parametrize("name", list(FAKE_CASES))
def test_fake_gives_shape_and_memory_format(name):
    x_shape, layout, w_shape, stride, padding, groups, res_shape, res_stride = FAKE_CASES[name]
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    with FakeTensorMode():
        x = torch.empty(x_shape, dtype=torch.float16, device="cuda").contiguous(memory_format=fmt)
        w = torch.empty(w_shape, dtype=torch.float16, device="cuda")
        res = None if res_shape is None else torch.empty(res_shape, dtype=torch.float16, device="cuda")
        y = _op()(*_args(x, w, res, stride, padding, groups, res_stride))
        expected_fmt = output_memory_format(x)
    p = (x_shape[2] + 2 * padding - w_shape[2]) // stride + 1
    assert y.shape == (x_shape[0], w_shape[0], p, p)
    assert y.dtype == torch.float16 and y.device.type == "cuda"
    assert y.is_contiguous(memory_format=expected_fmt)


def test_fake_rejects_float32_and_names_the_other_backends():
    with FakeTensorMode():
        x = torch.empty(1, 8, 5, 5, device="cuda")
        w = torch.empty(8, 8, 3, 3, device="cuda")
        with pytest.raises(RuntimeError, match="backend='triton' or backend='reference'"):
            _op()(*_args(x, w))
