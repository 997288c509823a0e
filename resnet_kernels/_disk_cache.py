"""Small JSON files of remembered choices (autotune winners, `auto` backend picks).

One JSON object per file, in $RESNET_KERNELS_CACHE_DIR (default
~/.cache/resnet_kernels). Safe by construction rather than by locking:
- a writer merges its entry into what is on disk now and replaces the file
  atomically (temporary file in the same directory + os.replace), so a reader
  never sees a half-written file; two racing writers can lose one entry, which
  costs one re-measurement, never a bad file;
- a missing, unreadable or corrupt file, or a malformed entry, reads as empty;
- an unwritable directory only means nothing is remembered.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Callable

CACHE_ENV = "RESNET_KERNELS_CACHE_DIR"


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "resnet_kernels")


def safe_name(text: str) -> str:
    """`text` usable in a file name (GPU names have spaces and slashes)."""
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)


def read(path: str, valid: Callable[[object], bool]) -> dict:
    """The entries stored at `path` that pass `valid`; anything unreadable counts as empty."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and valid(v)}


def merge_write(path: str, key: str, value: object, valid: Callable[[object], bool]) -> dict:
    """Add one entry to the file at `path`; returns the merged entries."""
    merged = read(path, valid)  # entries other processes wrote since we last read
    merged[key] = value
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cache-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(merged, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # unwritable: the entry is only remembered in this process
    return merged
