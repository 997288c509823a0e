"""The torchvision drop-ins (resnet_kernels.models.imagenet) against torchvision itself."""

import copy
import io

import pytest
import torch

import resnet_kernels.models as rk
from helpers import rel_error
from resnet_kernels.backends import unavailable_reason
from test_models_helpers import assert_close, images, same_weights_pair

tv = pytest.importorskip("torchvision.models.resnet")

BUILDERS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]

# Small configurations that exercise every architectural option of the builders
# (block type, groups, width, dilation, num_classes) at a fraction of their cost.
SMALL = {
    "basic": (lambda m: m.ResNet(m.BasicBlock, [1, 2, 1, 1], num_classes=10), 32),
    "bottleneck": (lambda m: m.ResNet(m.Bottleneck, [2, 1, 1, 1], num_classes=10), 32),
    "grouped": (lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=16), 32),
    "wide": (lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], width_per_group=128, num_classes=10), 32),
    "dilated": (lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], replace_stride_with_dilation=[False, True, True]), 48),
}


def _small_pair(name):
    make, size = SMALL[name]
    tv_model, ours = same_weights_pair(lambda: make(tv), lambda: make(rk))
    return tv_model, ours, size


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_structure_matches_torchvision(name):
    """Same state_dict keys in the same order with the same shapes; same modules but the fused ReLUs."""
    with torch.device("meta"):
        theirs, ours = getattr(tv, name)(), getattr(rk, name)()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    relu_free = [n for n, m in theirs.named_modules() if not isinstance(m, torch.nn.ReLU)]
    assert [n for n, _ in ours.named_modules()] == relu_free


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnext50_32x4d"])
def test_builder_eval_matches_torchvision(name):
    theirs, ours = same_weights_pair(getattr(tv, name), getattr(rk, name))
    x = images(2, 32)
    with torch.no_grad():
        assert_close(ours.eval()(x, backend="reference"), theirs.eval()(x))


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_matches_torchvision(name, channels_last):
    theirs, ours, size = _small_pair(name)
    x = images(2, size, channels_last=channels_last)
    with torch.no_grad():
        assert_close(ours.eval()(x, backend="reference"), theirs.eval()(x))


@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_same_init_as_torchvision(zero_init_residual):
    """Same registration order, so the same seed draws the same weights."""
    states = []
    for models in (tv, rk):
        torch.manual_seed(3)
        states.append(models.resnet18(zero_init_residual=zero_init_residual).state_dict())
    assert all(torch.equal(a, b) for a, b in zip(*(s.values() for s in states)))
    assert zero_init_residual == bool((states[1]["layer1.0.bn2.weight"] == 0).all())


@pytest.mark.parametrize("name", ["basic", "bottleneck"])
def test_train_step_matches_torchvision(name):
    """Train mode runs torch's own layers: outputs, gradients and running statistics agree."""
    theirs, ours, size = _small_pair(name)
    theirs.train()
    ours.train()
    x = images(2, size)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    outs = [theirs(xs[0]), ours(xs[1], backend="reference")]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-6, atol=1e-6)
    for out in outs:
        out.square().mean().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-6, atol=1e-7)
    their_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, their_params[key].grad, rtol=1e-5, atol=1e-6, msg=key)
    their_buffers = dict(theirs.named_buffers())
    for key, b in ours.named_buffers():
        torch.testing.assert_close(b, their_buffers[key], rtol=1e-6, atol=1e-7, msg=key)


def test_eval_gradients_match_torchvision():
    """Eval mode with grad enabled: the fused op's autograd, including gamma/beta through the fold."""
    theirs, ours, size = _small_pair("bottleneck")
    theirs.eval()
    ours.eval()
    x = images(2, size)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    theirs(xs[0]).square().mean().backward()
    ours(xs[1], backend="reference").square().mean().backward()
    assert_close(xs[1].grad, xs[0].grad, rel=1e-4)
    their_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert rel_error(p.grad, their_params[key].grad) < 1e-4, key


def test_state_dict_round_trip():
    """torchvision -> ours -> torchvision gives back every tensor, in torchvision's key order."""
    theirs, ours, _ = _small_pair("bottleneck")
    back = SMALL["bottleneck"][0](tv)
    back.load_state_dict(ours.state_dict())
    original = theirs.state_dict()
    assert list(back.state_dict()) == list(original)
    assert all(torch.equal(v, original[k]) for k, v in back.state_dict().items())


def test_whole_model_save_load_and_dtype_move():
    theirs, ours, size = _small_pair("basic")
    x = images(1, size)
    with torch.no_grad():
        ours.eval()(x, backend="reference")  # fill the fold cache before saving
        buffer = io.BytesIO()
        torch.save(ours, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert_close(loaded(x, backend="reference"), theirs.eval()(x))
        # float64 weights, float64 input: the op's float64 reference path; folds stay fp32.
        out = loaded.to(torch.float64)(x.double(), backend="reference")
        assert_close(out, theirs.double()(x.double()), rel=1e-6)


def test_autocast_bf16_error_within_twice_torchvisions():
    theirs, ours, size = _small_pair("bottleneck")
    theirs.eval()
    ours.eval()
    x = images(2, size)
    with torch.no_grad():
        exact = copy.deepcopy(theirs).double()(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            their_out, our_out = theirs(x), ours(x, backend="reference")
    assert our_out.dtype == their_out.dtype == torch.bfloat16
    assert rel_error(our_out, exact) <= 2 * rel_error(their_out, exact)


def test_compile_fullgraph_traces_eval_and_sees_weight_edits():
    """No graph breaks; the fold is traced into the graph, so in-place BatchNorm edits still apply."""
    theirs, ours, size = _small_pair("bottleneck")
    theirs.eval()
    ours.eval()
    x = images(1, size)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert_close(compiled(x, backend="reference"), theirs(x))
        for model in (theirs, ours):
            model.layer1[0].bn2.weight.mul_(3)
        assert_close(compiled(x, backend="reference"), theirs(x))


def test_torch_export_keeps_one_fused_op_per_conv():
    """torch.export traces the eval model into one conv_bn_act node per convolution (the default
    backend, auto: the reference on the CPU, also with the Triton interpreter on) and the exported
    program computes what the model does on a fresh input."""
    theirs, ours, size = _small_pair("bottleneck")
    theirs.eval()
    ours.eval()
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in ours.modules())
    with torch.no_grad():
        program = torch.export.export(ours, (images(2, size),))
        fused = [n for n in program.graph.nodes if "conv_bn_act" in str(n.target)]
        assert len(fused) == convs
        x = images(2, size)
        assert_close(program.module()(x), theirs(x))


def _triton_missing():
    try:
        from resnet_kernels.triton import conv_bn_act  # noqa: F401
    except ImportError as err:
        return f"resnet_kernels.triton is not importable ({err})"
    return unavailable_reason("triton", torch.empty(1, 1, 1, 1))


TRITON_MISSING = _triton_missing()


@pytest.mark.slow
@pytest.mark.skipif(TRITON_MISSING is not None, reason=str(TRITON_MISSING))
def test_triton_backend_whole_model():
    """Every fused call of a ResNet-18-style net (stem, basic blocks, downsample) through the Triton kernels.

    One block per stage: under the interpreter each call costs seconds.
    """
    theirs, ours = same_weights_pair(
        lambda: tv.ResNet(tv.BasicBlock, [1, 1, 1, 1]), lambda: rk.ResNet(rk.BasicBlock, [1, 1, 1, 1])
    )
    x = images(1, 32, channels_last=True)
    with torch.no_grad():
        assert_close(ours.eval()(x, backend="triton"), theirs.eval()(x), rel=1e-3)


def test_backend_default_and_override():
    """The constructor's backend is forward's default; a bad name reaches the op's clear error."""
    model = rk.ResNet(rk.BasicBlock, [1, 1, 1, 1], backend="no-such-backend").eval()
    x = images(1, 32)
    with torch.no_grad(), pytest.raises(ValueError, match="backend must be one of"):
        model(x)
    with torch.no_grad():
        model(x, backend="reference")

