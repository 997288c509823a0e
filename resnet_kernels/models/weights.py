"""Loading weights into a model, offline.

``weights=`` of every builder is one of
* a torchvision weights enum member (``ResNet50_Weights.IMAGENET1K_V2``) or
  its name (``"IMAGENET1K_V2"``, ``"DEFAULT"``): read from torch's hub cache,
  ``torch.hub.get_dir()/checkpoints/<file name of the enum's url>``, where
  torchvision itself stores it. Nothing is ever downloaded; a missing file is
  an error that names the path to put it at.
* a path to a state_dict file, read with ``torch.load(weights_only=True)``;
* a state_dict (a mapping of names to tensors).

A state_dict that does not fit the model (missing or unexpected keys, wrong
shapes) is refused with all its problems listed.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from torch import nn

# BatchNorm counts its updates in num_batches_tracked; checkpoints written
# before it existed (torchvision's ImageNet weights among them) lack it and
# FrozenBatchNorm2d drops it, so its absence or presence is never an error.
_OPTIONAL_SUFFIX = "num_batches_tracked"
_LISTED = 10


def is_weights_enum(weights: Any) -> bool:
    """A torchvision WeightsEnum member (duck-typed: torchvision stays optional)."""
    return isinstance(weights, enum.Enum) and hasattr(weights, "url") and hasattr(weights, "meta")


def _weights_enum(enum_name: str):
    try:
        import torchvision.models
    except ImportError as err:
        raise ImportError(f"weights given by name need torchvision for {enum_name} ({err})") from None
    return getattr(torchvision.models, enum_name)


def resolve(weights: Any, enum_name: Optional[str] = None) -> Any:
    """Normalise a builder's ``weights=``: None, an enum member, a file path or a state_dict.

    ``enum_name`` names the torchvision enum of the builder (None for models
    torchvision does not have); an enum member of another class is refused.
    """
    if weights is None or isinstance(weights, Mapping):
        return weights
    if is_weights_enum(weights):
        if enum_name is None or type(weights).__name__ != enum_name:
            expected = enum_name or "a path or a state_dict (this model has no torchvision weights)"
            raise TypeError(f"weights: expected {expected}, got {weights!r}")
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if os.path.isfile(path):
            return path
        if enum_name is not None and isinstance(weights, str):
            try:
                return _weights_enum(enum_name).verify(weights)
            except (KeyError, ValueError):
                pass
        names = f" nor a {enum_name} name" if enum_name is not None else ""
        raise FileNotFoundError(f"weights: {path!r} is not a file{names}")
    raise TypeError(
        f"weights must be a torchvision weights enum, a path or a state_dict, got {type(weights).__name__}"
    )


def hub_path(weights: enum.Enum) -> str:
    """Where torchvision caches the file of a weights enum member."""
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _read(weights: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(weights, Mapping):
        return weights
    if is_weights_enum(weights):
        path = hub_path(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"weights {weights!r}: {path} does not exist, and resnet_kernels never downloads. "
                f"Download {weights.url} and put it at {path} (torch.hub.get_dir() is {torch.hub.get_dir()})."
            )
    else:
        path = weights
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"weights: {path} holds a {type(state_dict).__name__}, not a state_dict")
    return state_dict


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"\n  {what} ({len(items)}): {shown}{more}"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError listing every key the model lacks, does not know, or has in another shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state_dict if k not in expected and not k.endswith(_OPTIONAL_SUFFIX)]
    shapes = [
        f"{k}: weights {tuple(v.shape)}, model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        message = f"the weights do not fit {type(model).__name__}:"
        if missing:
            message += _listing("missing keys", missing)
        if unexpected:
            message += _listing("unexpected keys", unexpected)
        if shapes:
            message += _listing("wrong shapes", shapes)
        raise ValueError(message)


def load_weights(model: nn.Module, weights: Any) -> None:
    """Load resolved ``weights`` (see :func:`resolve`) into ``model``, after checking they fit."""
    state_dict = _read(weights)
    check_state_dict(model, state_dict)
    # strict=False only lets num_batches_tracked be absent; everything else was checked above.
    model.load_state_dict(state_dict, strict=False)
