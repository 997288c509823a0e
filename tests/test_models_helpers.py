"""Helpers shared by the model tests (this file holds no tests)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from helpers import rel_error

# Fused eval (BN folded into the conv epilogue) against torch's conv-then-BN,
# both fp32: the two orders of rounding differ by ~1e-7 per layer.
FP32_REL = 2e-5


def randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Random gamma, beta and running statistics in every BatchNorm, so eval mode tests the fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                c = m.running_var.numel()
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
    return model


def same_weights_pair(make_torchvision, make_ours, seed: int = 0):
    """(torchvision model, our model), same random init (same seed) and the same randomized BatchNorms."""
    torch.manual_seed(seed)
    tv = randomize_batchnorm(make_torchvision(), seed)
    torch.manual_seed(seed)
    ours = make_ours()
    ours.load_state_dict(tv.state_dict())
    return tv, ours


def images(n: int = 1, size: int = 32, seed: int = 1, channels_last: bool = False) -> torch.Tensor:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def assert_close(out: torch.Tensor, ref: torch.Tensor, rel: float = FP32_REL) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    err = rel_error(out, ref)
    assert err <= rel, f"relative error {err:.2e} > {rel:.0e}"


def assert_train_step_matches_eager(model: nn.Module, eager, x: torch.Tensor) -> None:
    """One train-mode step of `model` against `eager(reference_copy, x, training=True)`:
    outputs, input and parameter gradients, and the BatchNorm running statistics."""
    reference = copy.deepcopy(model)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    out, expected = model(xs[0], backend="reference"), eager(reference, xs[1], training=True)
    assert_close(out, expected, rel=1e-6)
    out.square().mean().backward()
    expected.square().mean().backward()
    assert_close(xs[0].grad, xs[1].grad, rel=1e-5)
    theirs = dict(reference.named_parameters())
    for key, p in model.named_parameters():
        assert_close(p.grad, theirs[key].grad, rel=1e-5)
    theirs = dict(reference.named_buffers())
    for key, b in model.named_buffers():
        if key.endswith("running_mean") or key.endswith("running_var"):  # F.batch_norm does not count batches
            torch.testing.assert_close(b, theirs[key], rtol=1e-6, atol=1e-7, msg=key)
