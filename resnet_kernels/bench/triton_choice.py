"""Which Triton kernel a layer ran, in a few words for the benchmark report.

The autotuner keeps the config of its latest launch (`best_config`, set on a
cached or a freshly timed pick alike); the layer benchmark asks right after
its own launches, so that is the layer's tile. Whether the reduction was split
is the backend's own rule (conv.default_split) applied to the layer's geometry.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..layer_shapes import ConvLayer


def config_label(cfg) -> str:
    """'128x128x64 w8 s4', plus ' tma', ' tma-persistent' or ' stream-k' for those candidates
    (tuning.py)."""
    kw = cfg.kwargs
    label = f"{kw['BLOCK_M']}x{kw['BLOCK_N']}x{kw['BLOCK_K']} w{cfg.num_warps} s{cfg.num_stages}"
    if kw.get("STREAM_K"):
        return label + " stream-k"
    if kw.get("PERSISTENT"):
        return label + " tma-persistent"
    return label + (" tma" if kw.get("TMA") else "")


def triton_label(layer: ConvLayer, x: torch.Tensor) -> Optional[str]:
    """The tile of the Triton kernel's latest launch and the split of `layer`'s reduction on input
    x, e.g. '64x64x64 w4 s3 split 9'; None before any launch. A config that asked for TMA names
    it even where the call could not take it (the autotuner only offers it where it can)."""
    from ..triton.conv import default_split
    from ..triton.conv_kernel import conv_bn_act_kernel

    cfg = getattr(conv_bn_act_kernel, "best_config", None)
    if cfg is None:
        return None
    split = default_split(x.shape[0] * layer.P * layer.Q, layer.K, layer.C // layer.groups, layer.R, layer.S,
                          layer.groups, x.device)
    return config_label(cfg) + (f" split {split}" if split > 1 else "")
