"""What every provider of one benchmark point shares: inputs, the reference, cuDNN's error.

Built once per point and kept while its providers run (they are the innermost
parameter, so one cached case at a time is enough and bounds memory). Each
case draws a fresh seed, recorded in the results.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch
from torch import nn

from .accuracy import rel_error
from .data import DTYPES, BN_EPS, LayerInputs, fresh_seed, images, layer_inputs, layer_read_bytes, sets_for_l2
from .layer_providers import cudnn_eager
from ..layer_shapes import ConvLayer
from .layers import ITEMSIZE
from .matrix import LayerSpec, ModelSpec
from .model_providers import loss_and_backward, torchvision_model

#: model outputs are checked on the first rows of the first batch (BN in eval mode
#: treats samples independently), so that the float64 reference stays cheap
ROWS_CHECKED = 32
#: fp16 gradients of a mean loss underflow without a loss scale (what GradScaler does)
FP16_LOSS_SCALE = 1024.0


def _double(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.double()


def layer_reference(layer: ConvLayer, inputs: LayerInputs) -> torch.Tensor:
    """The layer in float64 through resnet_kernels.reference (BN folded in float32, then upcast)."""
    from ..functional import fold_bn
    from ..reference import conv_bn_act

    scale, shift = fold_bn((inputs.gamma, inputs.beta, inputs.mean, inputs.var, BN_EPS))
    return conv_bn_act(
        inputs.x.double(), inputs.weight.double(), scale.double(), shift.double(), _double(inputs.residual),
        (layer.stride,) * 2, (layer.padding,) * 2, (1, 1), layer.groups, layer.relu, None, None, 1,
    )


@dataclass
class LayerCase:
    sets: list[LayerInputs]
    ref: torch.Tensor  # float64 output for sets[0]
    baseline_error: float  # cudnn-eager's relative error on sets[0]
    seed: int


@lru_cache(maxsize=1)
def layer_case(spec: LayerSpec, l2_bytes: int) -> LayerCase:
    seed = fresh_seed()
    generator = torch.Generator(device="cuda").manual_seed(seed)
    layer, dtype = spec.layer, DTYPES[spec.dtype]
    count = sets_for_l2(layer_read_bytes(layer, spec.batch, ITEMSIZE[spec.dtype]), l2_bytes)
    sets = [layer_inputs(layer, spec.batch, dtype, generator) for _ in range(count)]
    ref = layer_reference(layer, sets[0])
    eager = cudnn_eager(layer)
    baseline = rel_error(eager.fn(*eager.prepare(sets[0])), ref)
    return LayerCase(sets, ref, baseline, seed)


@dataclass
class ModelCase:
    cpu_model: nn.Module  # float32, eval mode; each provider gets a copy on the device
    images: list[torch.Tensor]
    ref: torch.Tensor  # float64 logits of images[0][:ROWS_CHECKED]
    baseline_error: float
    seed: int

    def device_model(self, dtype: torch.dtype) -> nn.Module:
        model = copy.deepcopy(self.cpu_model)
        return model.to(device="cuda", dtype=dtype, memory_format=torch.channels_last)


@lru_cache(maxsize=1)
def model_case(spec: ModelSpec, l2_bytes: int) -> ModelCase:
    seed = fresh_seed()
    generator = torch.Generator(device="cuda").manual_seed(seed)
    dtype = DTYPES[spec.dtype]
    cpu_model = torchvision_model(spec.model, seed).eval()
    per_set = spec.batch * 3 * 224 * 224 * ITEMSIZE[spec.dtype]
    batches = [images(spec.batch, dtype, generator) for _ in range(sets_for_l2(per_set, l2_bytes, max_sets=16))]
    rows = batches[0][:ROWS_CHECKED]
    with torch.no_grad():
        ref = copy.deepcopy(cpu_model).to("cuda", torch.float64)(rows.double())
        case = ModelCase(cpu_model, batches, ref, 0.0, seed)
        case.baseline_error = rel_error(case.device_model(dtype)(batches[0])[:ROWS_CHECKED], ref)
    return case


def flat_grads(model: nn.Module, names: list[str], scale: float = 1.0) -> torch.Tensor:
    """All parameter gradients, in the order of ``names``, as one float32 vector."""
    params = dict(model.named_parameters())
    return torch.cat([params[name].grad.float().flatten() / scale for name in names])


@dataclass
class TrainCase:
    cpu_model: nn.Module  # float32, train mode
    batches: list[tuple[torch.Tensor, torch.Tensor]]  # (images in float32, labels)
    ref_grads: torch.Tensor  # float32 gradients on batches[0], TF32 off
    baseline_error: float  # torchvision eager AMP's gradient error
    seed: int

    def device_model(self) -> nn.Module:
        return copy.deepcopy(self.cpu_model).to(device="cuda", memory_format=torch.channels_last)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.cpu_model.named_parameters()]

    def grads(self, module: nn.Module, run: nn.Module, dtype: torch.dtype) -> torch.Tensor:
        """Gradients of ``module``'s parameters after one AMP forward/backward of ``run`` on batches[0]."""
        scale = FP16_LOSS_SCALE if dtype == torch.float16 else 1.0
        module.zero_grad(set_to_none=True)
        loss_and_backward(run, *self.batches[0], dtype, scale)
        return flat_grads(module, self.names, scale)


@lru_cache(maxsize=1)
def train_case(spec: ModelSpec, l2_bytes: int) -> TrainCase:
    seed = fresh_seed()
    generator = torch.Generator(device="cuda").manual_seed(seed)
    cpu_model = torchvision_model(spec.model, seed).train()
    per_set = spec.batch * 3 * 224 * 224 * 4
    batches = [
        (images(spec.batch, torch.float32, generator),
         torch.randint(0, 1000, (spec.batch,), device="cuda", generator=generator))
        for _ in range(sets_for_l2(per_set, l2_bytes, max_sets=16))
    ]
    case = TrainCase(cpu_model, batches, torch.empty(0), 0.0, seed)
    reference = case.device_model()
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        reference.zero_grad(set_to_none=True)
        loss_and_backward(reference, *batches[0], torch.float32)
        case.ref_grads = flat_grads(reference, case.names)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    del reference
    eager = case.device_model()
    case.baseline_error = rel_error(case.grads(eager, eager, DTYPES[spec.dtype]), case.ref_grads)
    return case
