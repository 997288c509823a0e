"""The distinct conv layers of each model and how often the model runs each.

Shapes, FLOPs and bytes come from resnet_kernels.layer_shapes (one fused pass
per conv: conv (+ folded BN) (+ residual add) (+ ReLU)); this module only
groups them per model and names them for reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layer_shapes import ConvLayer, model_layers

#: bytes of one element per dtype name used across the benchmarks
ITEMSIZE = {"fp16": 2, "bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelLayer:
    """A distinct layer of one model: its shape (named after its first module) and count."""

    layer: ConvLayer
    count: int


def distinct_layers(model: str) -> list[ModelLayer]:
    """The distinct layers of ``model`` (all but the name equal), in first-use order."""
    counts: dict[tuple, list] = {}
    for layer in model_layers(model):
        entry = counts.setdefault(layer[1:], [layer, 0])
        entry[1] += 1
    return [ModelLayer(layer, count) for layer, count in counts.values()]


def describe(layer: ConvLayer) -> str:
    """e.g. '256>64 1x1/1 56x56', plus groups, '+res' and 'no-relu' where they apply."""
    text = f"{layer.C}>{layer.K} {layer.R}x{layer.S}/{layer.stride} {layer.H}x{layer.W}"
    if layer.groups > 1:
        text += f" g{layer.groups}"
    if layer.has_residual:
        text += " +res"
    if not layer.relu:
        text += " no-relu"
    return text
