"""The ``auto`` backend: per layer shape, the fastest measured backend.

On the CPU the choice is the reference (the only backend that runs there
outside the Triton interpreter). On a GPU every available backend is timed
once per distinct call signature (shape, strides kind, dtype, fused features)
and the winner is kept in memory and in a JSON file per GPU and version, so a
second process starts without measuring. The file is written atomically
(temporary file + rename), and a missing or corrupt file is treated as empty.

Measuring synchronises the device, so warm a model up once before capturing
it in a CUDA graph.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from typing import Callable, Optional

import torch

from . import backends
from ._args import ConvGeometry, output_memory_format

CACHE_ENV = "RESNET_KERNELS_CACHE_DIR"

_memory: dict[str, str] = {}


def cache_dir() -> str:
    default = os.path.join(os.path.expanduser("~"), ".cache", "resnet_kernels")
    return os.environ.get(CACHE_ENV, default)


def cache_path(device: torch.device) -> str:
    from . import __version__

    gpu = torch.cuda.get_device_name(device).replace(" ", "_").replace("/", "_")
    name = f"auto-{gpu}-torch{torch.__version__}-rk{__version__}.json"
    return os.path.join(cache_dir(), name)


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


def _load(path: str) -> dict[str, str]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str) and v in backends.BACKENDS}


def _store(path: str, key: str, name: str) -> None:
    """Merge one entry into the cache file; concurrent writers each leave a valid file."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = _load(path)
        data[key] = name
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time


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
    cached = _load(path).get(key)
    if cached in candidates:
        _memory[key] = cached
        return cached
    timer = timer or time_cuda
    times = {}
    for name in candidates:
        impl = backends.implementation(name, x)
        try:
            times[name] = timer(lambda: impl(*args))
        except Exception as err:  # a backend that fails here is not chosen, but said so
            warnings.warn(f"auto backend: {name!r} failed on {key} and is skipped: {err}")
            continue
    best = min(times, key=times.get) if times else "reference"
    _memory[key] = best
    _store(path, key, best)
    return best
