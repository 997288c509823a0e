"""resnet_kernels.nn: ConvBNAct / FusedModule against torch's own layers, and the fold cache."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_kernels.nn import ConvBNAct, FusedModule
from test_models_helpers import assert_close, randomize_batchnorm

C_IN, C_OUT = 4, 8


def _unit(relu=True, stride=1, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(C_IN, C_OUT, 3, stride=stride, padding=1, bias=False)
    return randomize_batchnorm(ConvBNAct(conv, nn.BatchNorm2d(C_OUT), relu=relu), seed)


def _x(n=2, size=8, seed=1, channels=C_IN):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _torch_unit(unit, x, residual=None, residual_stride=1):
    """What the unit computes, in torch's own layers (eval BatchNorm, option-A residual by hand)."""
    y = unit[1](unit[0](x))
    if residual is not None:
        r = residual[:, :, ::residual_stride, ::residual_stride]
        y = y + F.pad(r, (0, 0, 0, 0, 0, y.shape[1] - r.shape[1]))
    return torch.relu(y) if unit.relu else y


def _cached(module: FusedModule) -> list[torch.Tensor]:
    return [t for _, _, folded in module._folds._entries.values() for t in folded]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_matches_torch_layers(relu, channels_last):
    unit = _unit(relu).eval()
    x = _x()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = unit(x, backend="reference")
        assert_close(out, _torch_unit(unit, x))
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_option_a_residual(mode):
    """A residual of fewer channels and twice the size, read at stride 2 into the first channels."""
    unit = _unit(stride=2).train(mode == "train")
    x, residual = _x(size=8), _x(size=8, seed=2, channels=C_IN)
    reference = copy.deepcopy(unit)
    with torch.no_grad():
        out = unit(x, residual, residual_stride=2, backend="reference")
        assert_close(out, _torch_unit(reference, x, residual, 2))


def test_train_mode_is_torch_exactly():
    unit = _unit().train()
    reference = copy.deepcopy(unit)
    x = _x().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = unit(x, backend="reference")
    expected = _torch_unit(reference, x_ref)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    for (name, p), p_ref in zip(unit.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=0, atol=0, msg=name)
    for name, b in unit.named_buffers():
        torch.testing.assert_close(b, reference.get_buffer(name), rtol=0, atol=0, msg=name)


def test_cache_holds_only_scale_and_shift():
    """8 bytes per BatchNorm channel; the conv weight is passed as it is, never copied."""
    unit = _unit().eval()
    with torch.no_grad():
        unit(_x(), backend="reference")
        cached = _cached(unit)
        assert [(t.dtype, t.shape) for t in cached] == [(torch.float32, (C_OUT,))] * 2
        assert sum(t.numel() * t.element_size() for t in cached) == 8 * C_OUT
        unit(_x(), backend="reference")
        assert all(a is b for a, b in zip(_cached(unit), cached)), "an unchanged BatchNorm was folded again"


def _edits():
    """In-place changes the cache key must see, each after a forward has filled the cache."""

    def load_state_dict(unit):
        other = randomize_batchnorm(copy.deepcopy(unit), seed=5)
        unit.load_state_dict(other.state_dict())

    def no_grad_mul(unit):
        with torch.no_grad():
            unit[1].weight.mul_(2)

    def running_var(unit):
        unit[1].running_var.add_(1.0)

    def replace_data(unit):
        # what .to(dtype)/.to(device) do to every parameter: a new tensor behind the same Parameter
        unit[1].bias.data = unit[1].bias.data + 1.0

    def batchnorm_trained_alone(unit):
        # running statistics updated by the BatchNorm itself, without a mode switch of the unit
        unit[1].train()
        unit[1](torch.randn(4, C_OUT, 3, 3, generator=torch.Generator().manual_seed(9)))
        unit[1].eval()

    def eps(unit):
        unit[1].eps = 0.5

    return [load_state_dict, no_grad_mul, running_var, replace_data, batchnorm_trained_alone, eps]


@pytest.mark.parametrize("edit", _edits(), ids=lambda f: f.__name__)
def test_cache_sees_edits(edit):
    unit = _unit().eval()
    x = _x()
    with torch.no_grad():
        before = unit(x, backend="reference")
        edit(unit)
        out = unit(x, backend="reference")
        assert_close(out, _torch_unit(unit, x))
        assert not torch.allclose(out, before), "the edit did not change the output; the test checks nothing"


def test_eval_refreshes_after_data_edit():
    """Writes through .data bypass version counters; eval() (any mode switch) empties the cache."""
    unit = _unit().eval()
    x = _x()
    with torch.no_grad():
        unit(x, backend="reference")
        unit[1].weight.data.mul_(2)
        unit.eval()
        assert_close(unit(x, backend="reference"), _torch_unit(unit, x))


def test_mode_switch_empties_cache():
    unit = _unit().eval()
    with torch.no_grad():
        unit(_x(), backend="reference")
    assert _cached(unit)
    unit.train()
    assert not _cached(unit)


def test_grad_enabled_eval_gives_batchnorm_grads():
    """With trainable gamma/beta and grad enabled the fold is recomputed per call, so they get gradients."""
    unit = _unit().eval()
    reference = copy.deepcopy(unit)
    x = _x()
    unit(x, backend="reference").sum().backward()
    _torch_unit(reference, x).sum().backward()
    assert not _cached(unit)
    for name in ("0.weight", "1.weight", "1.bias"):
        assert_close(unit.get_parameter(name).grad, reference.get_parameter(name).grad, rel=1e-5)


def test_frozen_batchnorm_is_cached_with_grad_enabled():
    unit = _unit().eval()
    unit[1].requires_grad_(False)
    x = _x().requires_grad_(True)
    unit(x, backend="reference").sum().backward()
    assert len(_cached(unit)) == 2
    assert x.grad is not None


def test_fold_made_under_inference_mode_serves_autograd_later():
    unit = _unit().eval()
    unit[1].requires_grad_(False)
    with torch.inference_mode():
        unit(_x(), backend="reference")
    x = _x().requires_grad_(True)
    unit(x, backend="reference").sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))], ids=["deepcopy", "pickle"])
def test_copies_start_with_empty_cache(copier):
    unit = _unit().eval()
    x = _x()
    with torch.no_grad():
        out = unit(x, backend="reference")
        clone = copier(unit)
        assert not _cached(clone)
        torch.testing.assert_close(clone(x, backend="reference"), out)


def test_conv_with_bias_or_string_padding_is_refused():
    with pytest.raises(ValueError, match="bias=False"):
        ConvBNAct(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8))
    with pytest.raises(ValueError, match="zero padding"):
        ConvBNAct(nn.Conv2d(4, 8, 3, padding="same", bias=False), nn.BatchNorm2d(8))


def test_state_dict_is_sequential_conv_bn():
    unit = _unit()
    sequential = nn.Sequential(nn.Conv2d(C_IN, C_OUT, 3, bias=False), nn.BatchNorm2d(C_OUT))
    assert list(unit.state_dict()) == list(sequential.state_dict())


def test_cache_sees_a_replaced_tensor_at_a_freed_address():
    """A BatchNorm tensor replaced by a new one that the allocator placed where an earlier,
    freed one was folded from (same data_ptr, a fresh version counter of 0, other values) must
    be folded again. Two reassignments between folds let the first free the folded tensor's
    block for the second; with a forward's temporaries allocated in between, the CPU allocator
    handed that block out again a few times in a hundred while the cache was keyed on
    addresses alone (this test then failed within 20 tries). Entries now hold the tensors they
    were folded from, so a replacement is told by identity and cannot take their address."""
    from resnet_kernels.functional import fold_bn
    from resnet_kernels.nn import FoldCache

    cache, bn, x = FoldCache(), torch.nn.BatchNorm2d(64).eval(), torch.randn(2, 64, 8, 8)
    for trial in range(300):
        bn.running_var = torch.rand(64) + 0.5  # version 0
        cache.get(bn)
        torch.relu(x * 2)  # a forward's temporaries
        bn.running_var = torch.rand(64) + 0.5  # the folded tensor's last other reference goes
        bn.running_var = torch.rand(64) + 1.0 + trial
        assert torch.equal(cache.get(bn)[0], fold_bn(bn)[0]), f"stale fold at try {trial}"
