"""Random inputs for the benchmarks, in sets that together overflow L2.

Timing one buffer over and over measures the L2 cache once the buffer fits in
it (50 MB on an H100: a whole batch-1 layer does). So every measurement cycles
through several independent sets of inputs and weights whose bytes add up to
at least twice the L2 size. Data is random, never zeros (zeros can run faster
and hide unwritten outputs), drawn from a fresh seed that is recorded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..layer_shapes import ConvLayer

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
BN_EPS = 1e-5
MAX_SETS = 512


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def sets_for_l2(set_bytes: int, l2_bytes: int, max_sets: int = MAX_SETS) -> int:
    """How many input sets of ``set_bytes`` make at least twice ``l2_bytes`` (1 to max_sets)."""
    return max(1, min(max_sets, math.ceil(2 * l2_bytes / set_bytes)))


@dataclass
class LayerInputs:
    """One set of a layer's inputs, with the BatchNorm unfolded (as torchvision holds it)."""

    x: torch.Tensor
    weight: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    residual: Optional[torch.Tensor]


def _randn(shape, dtype, generator, scale: float = 1.0) -> torch.Tensor:
    t = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32) * scale
    return t.to(dtype).contiguous(memory_format=torch.channels_last) if len(shape) == 4 else t.to(dtype)


def _uniform(n: int, dtype, generator, low: float, high: float) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=generator.device) * (high - low) + low).to(dtype)


def layer_inputs(layer: ConvLayer, n: int, dtype: torch.dtype, generator: torch.Generator) -> LayerInputs:
    """Activations ~N(0,1), He-scaled weights (outputs stay O(1)), BN statistics near 1/0."""
    fan_in = layer.C // layer.groups * layer.R * layer.S
    k = layer.K
    return LayerInputs(
        x=_randn((n, layer.C, layer.H, layer.W), dtype, generator),
        weight=_randn((k, layer.C // layer.groups, layer.R, layer.S), dtype, generator, (2.0 / fan_in) ** 0.5),
        gamma=_uniform(k, dtype, generator, 0.75, 1.25),
        beta=_randn((k,), dtype, generator, 0.1),
        mean=_randn((k,), dtype, generator, 0.1),
        var=_uniform(k, dtype, generator, 0.75, 1.25),
        residual=_randn((n, k, layer.P, layer.Q), dtype, generator) if layer.has_residual else None,
    )


def layer_read_bytes(layer: ConvLayer, n: int, itemsize: int) -> int:
    """Bytes one call reads (input, weights, residual): what must overflow L2."""
    elements = n * layer.C * layer.H * layer.W + layer.K * (layer.C // layer.groups) * layer.R * layer.S
    if layer.has_residual:
        elements += n * layer.K * layer.P * layer.Q
    return elements * itemsize


def images(n: int, dtype: torch.dtype, generator: torch.Generator, size: int = 224) -> torch.Tensor:
    return _randn((n, 3, size, size), dtype, generator)


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics, so that folding them is actually exercised."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
