"""Autotune winners on disk, so that a second process does not tune again.

One JSON object per file, ``{shape key: {"BLOCK_M": .., "num_warps": .., ...}}``,
one file per GPU name, Triton version and package version (a new Triton or a
new kernel may change which config wins), in the directory the `auto` backend
uses. Atomic writes and tolerance of corrupt files: see resnet_kernels/_disk_cache.py.
"""

from __future__ import annotations

import os
from typing import Optional

from .. import _disk_cache


def default_path(gpu_name: str) -> str:
    import triton

    from .. import __version__

    name = f"triton-tuning-{_disk_cache.safe_name(gpu_name)}-triton{triton.__version__}-rk{__version__}.json"
    return os.path.join(_disk_cache.cache_dir(), name)


def _valid_entry(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and type(v) is int for k, v in value.items())


def read(path: str) -> dict:
    """The entries stored at `path`; anything unreadable counts as empty."""
    return _disk_cache.read(path, _valid_entry)


class TuningCache:
    """Winners of one file, read once and kept in memory; `put` also writes through."""

    def __init__(self, path: str):
        self.path = path
        self._entries: Optional[dict] = None

    def get(self, key: str) -> Optional[dict]:
        if self._entries is None:
            self._entries = read(self.path)
        return self._entries.get(key)

    def put(self, key: str, value: dict) -> None:
        self._entries = _disk_cache.merge_write(self.path, key, value, _valid_entry)
