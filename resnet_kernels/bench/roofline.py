"""The roofline floor: no implementation of a layer runs much faster than this.

floor = max(FLOPs / peak FLOP/s, bytes / bandwidth), with the two ceilings
measured on the same GPU in the same run (peaks.py) and the fewest bytes one
fused pass moves (layer_shapes.ConvLayer.min_bytes: input, weights and
residual read once, output written once, fp32 scale and shift). A model's
floor is the sum of its convs' floors; pooling and the final linear layer are
left out (under 0.1% of ResNet-50's FLOPs).
"""

from __future__ import annotations

from typing import Iterable

from ..layer_shapes import ConvLayer


def floor_s(flops: float, nbytes: float, peak_flops: float, bandwidth: float) -> float:
    return max(flops / peak_flops, nbytes / bandwidth)


def limiter(flops: float, nbytes: float, peak_flops: float, bandwidth: float) -> str:
    """Which ceiling sets the floor: 'compute' or 'memory'."""
    return "compute" if flops / peak_flops >= nbytes / bandwidth else "memory"


def percent_of_floor(measured_s: float, floor: float) -> float:
    """100% means running at the floor; 50% means twice as slow as the floor."""
    return 100.0 * floor / measured_s


def layer_floor_s(layer: ConvLayer, n: int, itemsize: int, peak_flops: float, bandwidth: float) -> float:
    return floor_s(layer.flops(n), layer.min_bytes(n, itemsize), peak_flops, bandwidth)


def model_floor_s(layers: Iterable[ConvLayer], n: int, itemsize: int, peak_flops: float, bandwidth: float) -> float:
    """Sum of the floors of every conv the model runs (as layer_shapes.model_layers lists them).

    Each layer is compute- or memory-bound on its own, so this is above
    max(total FLOPs / peak, total bytes / bandwidth).
    """
    return sum(layer_floor_s(layer, n, itemsize, peak_flops, bandwidth) for layer in layers)
