"""Compile the conv kernel's autotune candidates for a set of layer shapes, in parallel.

Triton's autotuner compiles its candidates one after another, in the process
that first calls a shape: ResNet-50's 24 distinct layers times 8 candidates
is ~190 compiles of 1-3 s each, minutes of a benchmark run spent on one CPU
core. This module compiles them ahead of the run, spread over worker
processes, with the JIT's own `warmup` (the exact specialisation and cache
key a launch uses, nothing launched), so that the autotuner later finds every
candidate in Triton's on-disk cache and only times them.

    python -m resnet_kernels.triton.warmup --models resnet50 --batches 256 --dtypes fp16 --jobs 16

With RESNET_KERNELS_TRITON_AUTOTUNE=0 in the environment it compiles the one
candidate an untuned run uses per shape (what the GPU tests run).

Needs a CUDA GPU (the compile target and the SM count of the split-K choice
come from it). A failure is reported and skipped: the autotuner would compile
that candidate itself.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Iterable

DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def shapes(models: Iterable[str], batches: Iterable[int], dtypes: Iterable[str]) -> list:
    """The distinct (layer, batch, dtype) of `models`; layers equal in all but their name count once."""
    from ..layer_shapes import model_layers

    seen, out = set(), []
    for model in models:
        for layer in model_layers(model):
            for batch in batches:
                for dtype in dtypes:
                    key = (layer[1:], batch, dtype)
                    if key not in seen:
                        seen.add(key)
                        out.append((layer, batch, dtype))
    return out


def warm_layer(layer, batch: int, dtype: str, device="cuda") -> int:
    """Compile (without launching) every candidate the autotuner would try for one layer call,
    and the split-K reduce kernel when the call splits; returns the number of kernels compiled."""
    from .aot import conv_layer_call
    from .conv import _EPILOGUE_ARGS, _conv_grid, _reduce_launch, kernel_args
    from .conv_kernel import conv_bn_act_kernel, splitk_epilogue_kernel

    args, groups = kernel_args(*conv_layer_call(layer, DTYPE_NAMES.get(dtype, dtype), False, batch, device))

    compiled = len(conv_bn_act_kernel.warmup(**args, grid=_conv_grid(args, groups)))  # the grid is not evaluated
    if args["SPLIT_K"] > 1:
        reduce_grid, reduce_kwargs = _reduce_launch(args, groups * args["K"])
        splitk_epilogue_kernel.warmup(**{n: args[n] for n in _EPILOGUE_ARGS}, **reduce_kwargs, grid=reduce_grid)
        compiled += 1
    return compiled


def _worker(items: list, deadline: float = float("inf")) -> tuple[int, list]:
    compiled, failures = 0, []
    for layer, batch, dtype in items:
        if time.time() > deadline:  # wall clock: comparable across the worker processes
            failures.append(f"{layer.name} b{batch} {dtype}: not warmed, out of time")
            continue
        try:
            compiled += warm_layer(layer, batch, dtype)
        except Exception as err:  # reported by the parent; the autotuner compiles it itself later
            failures.append(f"{layer.name} b{batch} {dtype}: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    return compiled, failures


def warm(items: list, jobs: int, budget_s: float = float("inf")) -> tuple[int, list]:
    """Compile for every (layer, batch, dtype) in `items` over `jobs` processes (spawned: CUDA
    does not survive a fork); returns (kernels compiled, failure messages). No new layer call
    starts after `budget_s` seconds (one already started finishes: its compiles are a few s)."""
    deadline = time.time() + budget_s
    if jobs <= 1:
        return _worker(items, deadline)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Round-robin chunks: neighbouring shapes of one model compile alike, so spread them.
    chunks = [items[i::jobs] for i in range(jobs) if items[i::jobs]]
    compiled, failures = 0, []
    with ProcessPoolExecutor(len(chunks), mp_context=mp.get_context("spawn")) as pool:
        for n, fails in pool.map(_worker, chunks, [deadline] * len(chunks)):
            compiled += n
            failures += fails
    return compiled, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_kernels.triton.warmup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50",
                        help="comma-separated model names, or 'all' for every ImageNet model (default resnet50)")
    parser.add_argument("--batches", default="256", help="comma-separated batch sizes (default 256)")
    parser.add_argument("--dtypes", default="fp16", help="comma-separated, of fp16, bf16, fp32 (default fp16)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no layer call after this many s")
    opts = parser.parse_args(argv)
    dtypes = opts.dtypes.split(",")
    unknown = [d for d in dtypes if d not in DTYPE_NAMES]
    if unknown:
        parser.error(f"--dtypes must be among {sorted(DTYPE_NAMES)}, got {unknown}")
    from ..layer_shapes import MODELS

    models = list(MODELS) if opts.models == "all" else opts.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models must be among {sorted(MODELS)} or 'all', got {unknown}")
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU: the kernels are compiled for the GPU the run will use")
    items = shapes(models, [int(b) for b in opts.batches.split(",")], dtypes)
    start = time.monotonic()
    compiled, failures = warm(items, opts.jobs, opts.budget_s)
    print(f"triton warm-up: {compiled} kernels for {len(items)} layer calls in {time.monotonic() - start:.0f} s "
          f"({opts.jobs} jobs), {len(failures)} failed")
    for failure in failures:
        print("  failed:", failure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
