"""The torch.library contract of the fused op: opcheck, gradcheck, torch.compile, autocast."""

import pytest
import torch

from resnet_kernels.functional import conv_bn_act
from resnet_kernels.ops import conv_bn_act as op


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


def _sample(dtype=torch.float32, *, residual="full", pre=False, groups=1, channels_last=False, grad=False):
    """One call's positional op arguments with fresh random tensors."""
    g = _gen()
    n, c, h, w, k = 2, 4, 6, 5, 6
    stride = 2 if residual == "option_a" else 1
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c // groups, 3, 3, generator=g, dtype=dtype)
    scale = torch.rand(k, generator=g, dtype=dtype) + 0.5
    shift = torch.randn(k, generator=g, dtype=dtype)
    p, q = (h - 1) // stride + 1, (w - 1) // stride + 1
    res = None
    if residual == "full":
        res = torch.randn(n, k, p, q, generator=g, dtype=dtype)
    elif residual == "option_a":
        res = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    in_scale = torch.rand(c, generator=g, dtype=dtype) + 0.5 if pre else None
    in_shift = torch.randn(c, generator=g, dtype=dtype) if pre else None
    tensors = [x, weight, scale, shift, res, in_scale, in_shift]
    if grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_(True)
    return (x, weight, scale, shift, res, [stride, stride], [1, 1], [1, 1], groups, True, in_scale, in_shift,
            stride if residual == "option_a" else 1, "reference")


CASES = {
    "plain": dict(residual=None),
    "residual": dict(residual="full"),
    "option_a": dict(residual="option_a"),
    "preact": dict(residual="full", pre=True),
    "groups": dict(residual=None, groups=2),
    "channels_last": dict(residual="full", channels_last=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_opcheck(case):
    torch.library.opcheck(op, _sample(**CASES[case], grad=True))


@pytest.mark.parametrize("case", ["residual", "option_a", "preact"])
def test_opcheck_triton_backend(case, monkeypatch):
    """The op contract holds with the Triton kernel too (on CPU through the interpreter)."""
    pytest.importorskip("triton")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    args = _sample(**CASES[case], grad=True)
    if torch.cuda.is_available():
        args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args[:-1] + ("triton",))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradcheck_float64(case):
    args = _sample(torch.float64, **CASES[case], grad=True)
    tensor_positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def f(*tensors):
        full = list(args)
        for i, t in zip(tensor_positions, tensors):
            full[i] = t
        return op(*full)

    assert torch.autograd.gradcheck(f, tuple(args[i] for i in tensor_positions))


def test_torch_compile_fullgraph_traces_the_op():
    args = _sample(residual="option_a", pre=True)
    x, weight, scale, shift, res, stride, *_ = args

    def f(x, weight, scale, shift, res):
        y = conv_bn_act(x, weight, scale, shift, res, stride=2, padding=1, residual_stride=2,
                        in_scale=args[10], in_shift=args[11], backend="reference")
        return y * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, weight, scale, shift, res), f(x, weight, scale, shift, res))


def test_autocast_runs_in_the_autocast_dtype():
    x, weight, scale, shift, res, *_ = _sample(residual="full")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_bn_act(x, weight, scale, shift, res, padding=1, backend="reference")
    assert out.dtype == torch.bfloat16
    expected = conv_bn_act(
        x.bfloat16(), weight.bfloat16(), scale, shift, res.bfloat16(), padding=1, backend="reference"
    )
    torch.testing.assert_close(out, expected)


def test_gradients_of_every_input_match_an_eager_composition():
    """Autograd of the op against autograd through plain torch ops (float64)."""
    args = _sample(torch.float64, residual="option_a", pre=True, grad=True)
    x, weight, scale, shift, res, stride, padding, dilation, groups, relu, in_scale, in_shift, rs, _ = args
    out = op(*args)
    grad_out = torch.randn(out.shape, generator=_gen(3), dtype=torch.float64)
    tensors = [x, weight, scale, shift, res, in_scale, in_shift]
    ours = torch.autograd.grad(out, tensors, grad_out)

    pre = torch.relu(x * in_scale.view(1, -1, 1, 1) + in_shift.view(1, -1, 1, 1))
    conv = torch.nn.functional.conv2d(pre, weight, None, stride, padding, dilation, groups)
    z = conv * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    padded = torch.nn.functional.pad(res[:, :, ::rs, ::rs], (0, 0, 0, 0, 0, z.shape[1] - res.shape[1]))
    expected_out = torch.relu(z + padded)
    torch.testing.assert_close(out, expected_out)
    expected = torch.autograd.grad(expected_out, tensors, grad_out)
    for name, a, b in zip(["x", "weight", "scale", "shift", "residual", "in_scale", "in_shift"], ours, expected):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("backend", ["reference", "triton", "auto"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_empty_batch_gives_an_empty_output_like_torch(backend, channels_last):
    """A batch of 0 (e.g. the last batch of a filtered loader) returns torch's empty output and
    empty gradients; an empty C, H or W stays an error (tests/test_errors.py)."""
    x = torch.randn(0, 4, 7, 7, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    res = torch.randn(0, 6, 4, 4)
    if channels_last:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = conv_bn_act(x, w, torch.rand(6), torch.randn(6), res, stride=2, padding=1, backend=backend)
    expected = torch.nn.functional.conv2d(x, w, None, 2, 1)
    assert y.shape == expected.shape == (0, 6, 4, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w))


def test_empty_batch_on_an_unavailable_backend_still_says_so():
    from resnet_kernels.backends import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="cuda"):
        conv_bn_act(torch.randn(0, 4, 7, 7), torch.randn(6, 4, 3, 3), backend="cuda")


def test_empty_batch_through_a_model_like_torchvision():
    import torchvision

    import resnet_kernels

    ours, theirs = resnet_kernels.resnet18().eval(), torchvision.models.resnet18().eval()
    x = torch.randn(0, 3, 64, 64)
    with torch.no_grad():
        assert ours(x).shape == theirs(x).shape == (0, 1000)


two_gpus = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason=f"needs two CUDA GPUs; this machine has {torch.cuda.device_count() if torch.cuda.is_available() else 0}",
)


@two_gpus
@pytest.mark.parametrize("backend", ["triton", "cuda", "auto"])
def test_tensors_on_a_device_that_is_not_current(backend):
    """x on cuda:1 while cuda:0 is current: the kernels launch (and auto times them) on cuda:1,
    on its current stream, and the result is right."""
    from resnet_kernels.backends import cuda_extension_error

    if backend == "cuda" and cuda_extension_error() is not None:
        pytest.skip(f"the cuda backend is not built: {cuda_extension_error()}")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 64, 9, 9, generator=g).half().to("cuda:1", memory_format=torch.channels_last)
    w = (torch.randn(64, 64, 3, 3, generator=g) / 24).half().to("cuda:1")
    sc, sh = torch.rand(64, generator=g).to("cuda:1"), torch.randn(64, generator=g).to("cuda:1")
    with torch.cuda.device(0):
        y = conv_bn_act(x, w, sc, sh, None, padding=1, backend=backend)
        torch.cuda.synchronize(1)
    assert y.device == x.device
    ref = conv_bn_act(x.cpu().float(), w.cpu().float(), sc.cpu(), sh.cpu(), None, padding=1, backend="reference")
    assert ((y.cpu().float() - ref).norm() / ref.norm()).item() < 2e-3
