"""Autotune winners on disk, so that a second process does not tune again.

One JSON object per file, ``{shape key: {"BLOCK_M": .., "num_warps": .., ...}}``,
one file per GPU name, Triton version and package version (a new Triton or a
new kernel may change which config wins). The directory is the one the `auto`
backend uses: $RESNET_KERNELS_CACHE_DIR, else ~/.cache/resnet_kernels.

Safe by construction rather than by locking:
- a writer merges its entry into what is on disk now and replaces the file
  atomically (temporary file in the same directory + os.replace), so a reader
  never sees a half-written file; two racing writers can lose one entry, which
  costs one re-tuning, never a bad file;
- a missing, unreadable or corrupt file, or a malformed entry, reads as empty;
- an unwritable directory only means nothing is remembered.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

CACHE_ENV = "RESNET_KERNELS_CACHE_DIR"


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "resnet_kernels")


def default_path(gpu_name: str) -> str:
    import triton

    from .. import __version__

    safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in gpu_name)
    return os.path.join(cache_dir(), f"triton-tuning-{safe}-triton{triton.__version__}-rk{__version__}.json")


def _valid_entry(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and type(v) is int for k, v in value.items())


def read(path: str) -> dict:
    """The entries stored at `path`; anything unreadable counts as empty."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if _valid_entry(v)}


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
        merged = read(self.path)  # entries other processes wrote since we last read
        merged[key] = value
        self._entries = merged
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tuning-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(merged, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # unwritable: the winner is only remembered in this process
