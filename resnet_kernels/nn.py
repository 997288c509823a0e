"""Modules that run a convolution and the BatchNorm around it as one fused op.

The modules keep ordinary ``nn.Conv2d`` / ``nn.BatchNorm2d`` children under the
names torchvision uses, as *parameter holders*: state_dicts, optimizers, DDP
and ``.to()`` see exactly what they see in torchvision. Only forward differs:

* BatchNorm with running statistics (eval mode): every convolution is one call
  of the fused op. Its BatchNorm is folded into per-channel fp32
  ``(scale, shift)``; the BatchNorm+ReLU of a pre-activation unit into
  ``(in_scale, in_shift)``. The children's own forward (and hooks) do not run.
* BatchNorm with batch statistics (train mode, or any BatchNorm in train
  mode): the children run as torch runs them (conv, the real BatchNorm, add,
  ReLU), so outputs, gradients and running-statistic updates are torch's.

The fold cache
--------------
A fold is a few tiny kernels per BatchNorm, so eval mode computes it once and
keeps it: two fp32 vectors per BatchNorm, 8 bytes per channel (0.2 MB for
ResNet-50). Convolution weights go to the op as they are; nothing copies them.
An entry also references the BatchNorm tensors it was folded from (no copy: the
module's own; a replaced one stays alive until the next fold of that module).

An entry is reused only while each tensor it was folded from is the same
tensor (the entry holds it, so a replacement is told by identity and cannot
take its address), unmodified: the key holds every tensor's data_ptr, dtype,
device and autograd version counter (bumped by any in-place op: load_state_dict,
optimizer steps, ``with torch.no_grad(): bn.weight.mul_(2)``), and eps.
BatchNorm's running-statistic updates do not bump the version counters of
running_mean/var, but each one increments num_batches_tracked, whose version
is in the key too. Checking is Python attribute reads only: no device work,
no host sync, so CUDA graph capture works.

Blind spot: writes through ``.data`` (``bn.weight.data.mul_(2)``) bypass the
version counter by design. After such an edit call ``model.eval()``: any mode
switch empties the cache.

No caching happens
* under torch.compile: the fold is traced into the graph, which keeps no
  Python-side state and lets the compiler fuse (or constant-fold) it;
* with grad enabled and BatchNorm affine parameters that require grad: the
  fold is recomputed each call so gamma and beta get gradients, as in torch's
  eval-mode BatchNorm. Run inference under ``torch.no_grad()`` or
  ``torch.inference_mode()`` to use the cache.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .functional import conv_bn_act as fused_conv_bn_act
from .functional import fold_bn
from .reference import expand_residual

Folded = tuple[torch.Tensor, torch.Tensor]


def _tensor_key(t: Optional[torch.Tensor]):
    if t is None:
        return None
    # Tensors made under torch.inference_mode have no version counter.
    version = None if t.is_inference() else t._version
    return (t.data_ptr(), t.dtype, t.device, version)


_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn_tensors(bn: nn.Module) -> tuple:
    return tuple(getattr(bn, name, None) for name in _BN_TENSORS)


def _bn_key(tensors: tuple, bn: nn.Module) -> tuple:
    return (*(_tensor_key(t) for t in tensors), bn.eps)


def _affine_requires_grad(bn: nn.Module) -> bool:
    weight, bias = bn.weight, bn.bias
    return (weight is not None and weight.requires_grad) or (bias is not None and bias.requires_grad)


class FoldCache:
    """``(scale, shift)`` per BatchNorm module, each with the key it was folded under."""

    def __init__(self) -> None:
        # Keyed by the module itself (not id()), so a module cannot be freed
        # and its id reused while an entry for it exists. An entry also holds
        # the tensors it was folded from: a replaced tensor is then told by
        # identity, and while the entry lives no new tensor can be allocated at
        # a folded one's address with a fresh version counter, which the key
        # alone would take for the old one.
        self._entries: dict[nn.Module, tuple[tuple, tuple, Folded]] = {}

    def get(self, bn: nn.Module) -> Folded:
        tensors = _bn_tensors(bn)
        key = _bn_key(tensors, bn)
        entry = self._entries.get(bn)
        if entry is not None and entry[1] == key and all(a is b for a, b in zip(entry[0], tensors)):
            return entry[2]
        # Ordinary tensors without history, even when first called under
        # inference_mode, so that a later call with grad enabled may save them.
        with torch.inference_mode(False), torch.no_grad():
            folded = fold_bn(bn)
        self._entries[bn] = (tensors, key, folded)
        return folded

    def clear(self) -> None:
        self._entries.clear()

    def __reduce__(self):
        # A pickled or deep-copied model has new tensors: it starts with an empty cache.
        return (FoldCache, ())


class FusedModule(nn.Module):
    """Base of the modules whose forward runs their conv/BatchNorm children as fused op calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._folds = FoldCache()

    def train(self, mode: bool = True):
        # Every mode switch, eval() included, starts from an empty cache: the
        # way to refresh it after edits the key cannot see (see the module doc).
        self._folds.clear()
        return super().train(mode)

    def _eager(self, bn: Optional[nn.Module], pre_bn: Optional[nn.Module] = None) -> bool:
        """True when a BatchNorm involved uses batch statistics (or the module trains)."""
        return self.training or (bn is not None and bn.training) or (pre_bn is not None and pre_bn.training)

    def folded(self, bn: nn.Module) -> Folded:
        """``fold_bn(bn)``, from the cache where that is safe (see the module doc)."""
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and _affine_requires_grad(bn)):
            return fold_bn(bn)
        return self._folds.get(bn)

    def pre_activation(self, x: torch.Tensor, bn: Optional[nn.Module]) -> tuple[torch.Tensor, Optional[nn.Module]]:
        """A BatchNorm+ReLU that feeds more than one convolution (projection shortcut and residual branch).

        Returns ``(input, pre_bn)`` for those convolutions: in fused mode ``(x, bn)``,
        each convolution applies it as its prologue; in eager mode
        ``(relu(bn(x)), None)``, applied once, so running statistics update once.
        """
        if bn is not None and self._eager(bn):
            return torch.relu(bn(x)), None
        return x, bn

    def conv_bn_act(
        self,
        x: torch.Tensor,
        conv: nn.Conv2d,
        bn: Optional[nn.Module] = None,
        residual: Optional[torch.Tensor] = None,
        *,
        pre_bn: Optional[nn.Module] = None,
        relu: bool = True,
        residual_stride: int = 1,
        backend: Optional[str] = None,
    ) -> torch.Tensor:
        """``relu?(bn(conv(relu(pre_bn(x)))) + residual)``, one fused op call in eval mode.

        ``bn`` and ``pre_bn`` are optional; ``residual`` may be an option-A
        shortcut (fewer channels, read at ``residual_stride``), see
        :func:`resnet_kernels.functional.conv_bn_act`. The convolution must
        have no bias and zero padding (every ResNet convolution does).
        """
        if self._eager(bn, pre_bn):
            if pre_bn is not None:
                x = torch.relu(pre_bn(x))
            y = conv(x)
            if bn is not None:
                y = bn(y)
            if residual is not None:
                y = y + expand_residual(residual, y.shape[1], residual_stride)
            return torch.relu(y) if relu else y
        scale, shift = self.folded(bn) if bn is not None else (None, None)
        in_scale, in_shift = self.folded(pre_bn) if pre_bn is not None else (None, None)
        return fused_conv_bn_act(
            x,
            conv.weight,
            scale,
            shift,
            residual,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            relu=relu,
            in_scale=in_scale,
            in_shift=in_shift,
            residual_stride=residual_stride,
            backend=backend,
        )


class ConvBNAct(FusedModule, nn.Sequential):
    """conv -> BatchNorm -> (+ residual) -> ReLU (optional) as one module.

    The children are ``0`` (the conv) and ``1`` (the BatchNorm), as in
    ``nn.Sequential(conv, bn)``, so it loads torchvision's ``downsample.0/.1``
    keys and indexes like torchvision's downsample.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, relu: bool = True) -> None:
        if conv.bias is not None:
            raise ValueError("ConvBNAct: conv must have bias=False; the BatchNorm shift takes its place")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"ConvBNAct: conv must use explicit zero padding, got padding={conv.padding!r}, "
                f"padding_mode={conv.padding_mode!r}"
            )
        super().__init__(conv, bn)
        self.relu = relu

    def forward(
        self,
        x: torch.Tensor,
        residual: Optional[torch.Tensor] = None,
        *,
        residual_stride: int = 1,
        backend: Optional[str] = None,
    ) -> torch.Tensor:
        return self.conv_bn_act(
            x,
            self._modules["0"],
            self._modules["1"],
            residual,
            relu=self.relu,
            residual_stride=residual_stride,
            backend=backend,
        )

    def extra_repr(self) -> str:
        return f"relu={self.relu}"
