"""What the benchmark suite measures: one list per benchmark kind.

Each spec's ``id`` is its pytest parameter id, made for ``-k``: model names,
``b<batch>`` and ``fp16``/``bf16`` (never a substring of one another, so
``-k "resnet50 and b256 and fp16"`` selects exactly that).
``quick`` is ResNet-50 at batch 256 fp16 only: its layers and its end-to-end run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..layer_shapes import ConvLayer
from .layers import ModelLayer, distinct_layers

LAYER_MODELS = ("resnet50", "resnet18", "resnext50_32x4d")
MODELS = ("resnet18", "resnet50", "resnet101", "resnet152", "resnext50_32x4d")
BATCHES = (1, 32, 256)
DTYPES = ("fp16", "bf16")
TRAIN_MODEL, TRAIN_BATCH = "resnet50", 256

#: one fused conv layer: ours through resnet_kernels.functional.conv_bn_act,
#: cuDNN as torchvision runs it (conv, BN, add, ReLU), cuDNN with BN folded and
#: its fused conv+bias(+add)+ReLU ops, and the eager layer under torch.compile.
LAYER_PROVIDERS = ("triton", "cuda", "cuda-wgmma", "cudnn-eager", "cudnn-fused", "inductor")
#: whole models; "-graph" is the same model replayed from a CUDA graph.
#: "cuda-wgmma" is the cuda backend with its opt-in Hopper kernel (kernel_choice.py).
MODEL_PROVIDERS = (
    "triton", "triton-graph", "cuda", "cuda-graph", "cuda-wgmma-graph",
    "cudnn-eager", "cudnn-eager-graph", "cudnn-fused", "cudnn-fused-graph",
    "inductor-default", "inductor",
)
#: a training step (forward, backward, SGD) under AMP
TRAIN_PROVIDERS = ("triton", "cuda", "cudnn-eager", "inductor-default")
#: our own providers; every other one is a baseline
OURS = ("triton", "triton-graph", "cuda", "cuda-graph", "cuda-wgmma", "cuda-wgmma-graph")


@dataclass(frozen=True)
class LayerSpec:
    model: str
    layer: ConvLayer  # named after its first module in the model
    count: int  # how many times the model runs it
    batch: int
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.model}.{self.layer.name}-b{self.batch}-{self.dtype}"


@dataclass(frozen=True)
class ModelSpec:
    model: str
    batch: int
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.model}-b{self.batch}-{self.dtype}"


@lru_cache(maxsize=None)
def _layers(model: str) -> tuple[ModelLayer, ...]:
    return tuple(distinct_layers(model))


def layer_specs(quick: bool) -> list[LayerSpec]:
    if quick:
        return [LayerSpec("resnet50", m.layer, m.count, 256, "fp16") for m in _layers("resnet50")]
    return [
        LayerSpec(model, m.layer, m.count, batch, dtype)
        for model in LAYER_MODELS
        for batch in BATCHES
        for dtype in DTYPES
        for m in _layers(model)
    ]


def model_specs(quick: bool) -> list[ModelSpec]:
    if quick:
        return [ModelSpec("resnet50", 256, "fp16")]
    return [ModelSpec(model, batch, dtype) for model in MODELS for batch in BATCHES for dtype in DTYPES]


def train_specs(quick: bool) -> list[ModelSpec]:
    return [] if quick else [ModelSpec(TRAIN_MODEL, TRAIN_BATCH, dtype) for dtype in DTYPES]
