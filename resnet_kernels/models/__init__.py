"""The ResNet family on the fused op.

* imagenet.py: torchvision drop-ins (ResNet, ResNeXt, Wide ResNet);
* cifar.py: the CIFAR-10 ResNets (option A) and plain nets of He et al. 2015;
* preact.py: pre-activation ResNets (He et al. 2016), ImageNet and CIFAR;
* convert.py: a torchvision model -> the fused model;
* weights.py: offline loading of ``weights=``.
"""

from .cifar import *  # noqa: F401,F403
from .cifar import __all__ as _cifar
from .convert import convert
from .imagenet import *  # noqa: F401,F403
from .imagenet import __all__ as _imagenet
from .preact import *  # noqa: F401,F403
from .preact import __all__ as _preact

__all__ = _imagenet + _cifar + _preact + ["convert"]
