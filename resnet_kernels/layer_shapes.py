"""The convolution layers of the ImageNet ResNets at 224x224, for tests and benchmarks.

Computed analytically from torchvision's model definitions (models/resnet.py),
not by running torchvision; tests/test_triton_layer_shapes.py checks the result
against forward hooks on torchvision's own models where torchvision is installed.

- stem: conv1 7x7/2 pad 3, 3 -> 64 channels, 224 -> 112, then a 3x3/2 max-pool to 56.
- BasicBlock (resnet18/34): conv1 3x3/stride (BN+ReLU), conv2 3x3 (BN + residual + ReLU).
- Bottleneck (the rest; v1.5: the stride sits in the 3x3), width =
  planes * width_per_group/64 * groups: conv1 1x1 (BN+ReLU), conv2 3x3/stride
  grouped (BN+ReLU), conv3 1x1 to 4*planes (BN + residual + ReLU).
- downsample (first block of a stage when the shape changes): 1x1/stride, BN, no ReLU.

In the fused op, has_residual marks the conv whose epilogue adds the shortcut,
and relu whether the epilogue ends in a ReLU.
"""

from __future__ import annotations

from typing import NamedTuple


class ConvLayer(NamedTuple):
    name: str
    C: int  # input channels
    K: int  # output channels
    H: int  # input height (= width: 224x224 input)
    W: int
    R: int
    S: int
    stride: int
    padding: int
    groups: int
    has_residual: bool
    relu: bool

    @property
    def P(self) -> int:
        return (self.H + 2 * self.padding - self.R) // self.stride + 1

    @property
    def Q(self) -> int:
        return (self.W + 2 * self.padding - self.S) // self.stride + 1

    def flops(self, batch: int) -> int:
        """Multiply-adds of the convolution, 2 FLOPs each (the epilogue is not counted)."""
        return 2 * batch * self.K * self.P * self.Q * (self.C // self.groups) * self.R * self.S

    def min_bytes(self, batch: int, itemsize: int) -> int:
        """Bytes one fused pass moves at least: read x, the weight and the residual once,
        write y once (+ fp32 scale and shift). All of x counts, although a strided
        1x1 (downsample) touches only every stride-th row and column of it."""
        acts = batch * (self.C * self.H * self.W + self.K * self.P * self.Q * (2 if self.has_residual else 1))
        weight = self.K * (self.C // self.groups) * self.R * self.S
        return (acts + weight) * itemsize + self.K * 8


# name: (block, blocks per stage, groups, width_per_group)
MODELS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 1, 128),
}


def model_layers(model: str) -> list[ConvLayer]:
    """Every convolution of `model` in forward order, named by torchvision's module path."""
    block, stages, groups, width_per_group = MODELS[model]
    layers = [ConvLayer("conv1", 3, 64, 224, 224, 7, 7, 2, 3, 1, False, True)]
    inplanes, size = 64, 56
    for stage, blocks in enumerate(stages):
        planes = 64 * 2**stage
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            name = f"layer{stage + 1}.{i}"
            out_size = size // stride
            if block == "basic":
                out_planes = planes
                layers += [
                    ConvLayer(f"{name}.conv1", inplanes, planes, size, size, 3, 3, stride, 1, 1, False, True),
                    ConvLayer(f"{name}.conv2", planes, planes, out_size, out_size, 3, 3, 1, 1, 1, True, True),
                ]
            else:
                width = planes * width_per_group // 64 * groups
                out_planes = planes * 4
                layers += [
                    ConvLayer(f"{name}.conv1", inplanes, width, size, size, 1, 1, 1, 0, 1, False, True),
                    ConvLayer(f"{name}.conv2", width, width, size, size, 3, 3, stride, 1, groups, False, True),
                    ConvLayer(f"{name}.conv3", width, out_planes, out_size, out_size, 1, 1, 1, 0, 1, True, True),
                ]
            if i == 0 and (stride != 1 or inplanes != out_planes):
                downsample = f"{name}.downsample.0"
                layers.append(ConvLayer(downsample, inplanes, out_planes, size, size, 1, 1, stride, 0, 1, False, False))
            inplanes, size = out_planes, out_size
    return layers


def distinct_layers(models=tuple(MODELS)) -> list[ConvLayer]:
    """The distinct conv shapes (everything but the name) of `models`, each named
    "model.module" after its first occurrence."""
    seen: dict[tuple, ConvLayer] = {}
    for model in models:
        for layer in model_layers(model):
            seen.setdefault(layer[1:], layer._replace(name=f"{model}.{layer.name}"))
    return list(seen.values())
