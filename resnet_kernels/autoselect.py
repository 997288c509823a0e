"""The ``auto`` backend: per layer shape, the fastest measured backend.

On the CPU the choice is the reference (the only backend that runs there
outside the Triton interpreter). On a GPU every available backend is timed
once per distinct call signature (shape, strides kind, dtype, fused features)
and the winner is kept in memory and in a JSON file per GPU and version
(written atomically, see _disk_cache.py), so a second process starts without
measuring.

Measuring synchronises the device, so warm a model up once before capturing
it in a CUDA graph.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Optional

import torch

from . import _disk_cache, backends
from ._args import ConvGeometry, output_memory_format

_memory: dict[str, str] = {}


def cache_path(device: torch.device) -> str:
    from . import __version__

    gpu = _disk_cache.safe_name(torch.cuda.get_device_name(device))
    return os.path.join(_disk_cache.cache_dir(), f"auto-{gpu}-torch{torch.__version__}-rk{__version__}.json")


def _valid(value: object) -> bool:
    return isinstance(value, str) and value in backends.BACKENDS


def signature(args: tuple, geometry: ConvGeometry) -> str:
    """A key that names everything the speed of a call depends on."""
    x, _, scale, shift, residual, *_rest = args
    relu, in_scale, residual_stride = args[9], args[10], args[12]
    layout = "nhwc" if output_memory_format(x) == torch.channels_last else "nchw"
    features = "".join(
        flag
        for flag, on in (
            ("s", scale is not None),
            ("b", shift is not None),
            ("r", residual is not None),
            ("a", relu),
            ("p", in_scale is not None),
        )
        if on
    )
    g = geometry
    return (
        f"{str(x.dtype).replace('torch.', '')}-{layout}-n{g.n}c{g.c}h{g.h}w{g.w}k{g.k}r{g.r}s{g.s}"
        f"-st{g.stride[0]}x{g.stride[1]}-pd{g.padding[0]}x{g.padding[1]}"
        f"-dl{g.dilation[0]}x{g.dilation[1]}-g{g.groups}-rs{residual_stride}-{features}"
    )


def time_cuda(fn: Callable[[], object], repeats: int = 10) -> float:
    """Median milliseconds of ``fn`` on the current CUDA stream, after one warm-up."""
    fn()
    start = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for a, b in zip(start, end):
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    times = sorted(a.elapsed_time(b) for a, b in zip(start, end))
    return times[len(times) // 2]


def choose(args: tuple, geometry: ConvGeometry, timer: Optional[Callable] = None) -> str:
    """The backend ``auto`` runs for this call."""
    x = args[0]
    candidates = backends.available_kernels(x)
    if len(candidates) == 1:
        return candidates[0]
    key = signature(args, geometry)
    if key in _memory and _memory[key] in candidates:
        return _memory[key]
    path = cache_path(x.device)
    cached = _disk_cache.read(path, _valid).get(key)
    if cached in candidates:
        _memory[key] = cached
        return cached
    timer = timer or time_cuda
    times = {}
    for name in candidates:
        impl = backends.implementation(name, x)
        try:
            # Events record on the current device: make it x's, where the kernels run.
            with torch.cuda.device_of(x):
                times[name] = timer(lambda: impl(*args))
        except Exception as err:  # a backend that fails here is not chosen, but said so
            warnings.warn(f"auto backend: {name!r} failed on {key} and is skipped: {err}")
            continue
    best = min(times, key=times.get) if times else "reference"
    _memory[key] = best
    _disk_cache.merge_write(path, key, best, _valid)
    return best
