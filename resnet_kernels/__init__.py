"""resnet_kernels: fused conv + BatchNorm + ReLU + residual kernels for the ResNet family."""

__version__ = "0.1.0"

from . import functional, nn, ops  # noqa: E402  (ops registers torch.ops.resnet_kernels.*)
from .backends import BackendUnavailableError, get_backend, set_backend  # noqa: E402
from .functional import conv_bn_act, fold_bn  # noqa: E402
from .models import *  # noqa: E402,F401,F403
from .models import __all__ as _models_all  # noqa: E402

__all__ = [
    "functional", "nn", "ops", "conv_bn_act", "fold_bn", "set_backend", "get_backend", "BackendUnavailableError",
    *_models_all,
]
