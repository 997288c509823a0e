"""Host time per fused-op call and per eager ResNet-50 forward (``python -m resnet_kernels.bench host-time``).

Without a CUDA graph every convolution of a model is one op call, and the Python it runs on
the host (argument checks, torch's custom-op dispatch, the backend's launch) bounds the speed
of small batches. This measures it in one of two ways:

- on a GPU: the wall time of enqueueing ``calls`` calls at batch 1, the device synchronised
  only outside the timed stretch. The GPU's own time for the same calls (CUDA events) is
  printed next to it: where it is the smaller, the GPU waited for the host and the wall time
  is the host's.
- ``--stub`` on a machine without a GPU (under ``TRITON_INTERPRET=1``): the triton backend with
  its kernel launches replaced by no-ops, so what is timed is everything a call does but the
  launch of the compiled kernel (Triton's autotuner included, its JIT launcher not).

Numbers are the minimum over ``rounds`` rounds of the mean per call: a shared machine's noise
only ever adds time.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

#: ResNet-50 layers of each kind: the stem, a 1x1 GEMM, a strided 3x3, a 1x1 with a residual.
LAYERS = ("resnet50.conv1", "resnet50.layer1.0.conv1", "resnet50.layer3.0.conv2", "resnet50.layer4.0.conv3")


def per_call_us(fn: Callable[[], object], calls: int, rounds: int, sync: Callable[[], None]) -> float:
    """min over rounds of (wall time of `calls` calls of fn) / calls, in microseconds; `sync`
    runs between rounds, outside the timed stretch."""
    best = float("inf")
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    sync()
    return best * 1e6


def device_us(fn: Callable[[], object], calls: int) -> float:
    """The GPU's time per call over `calls` back-to-back calls (CUDA events), in microseconds."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / calls


def stub_triton_launches(setter: Callable = setattr) -> None:
    """Replace the triton backend's kernel launches by no-ops (--stub); `setter` sets each
    (a test passes monkeypatch.setattr, which undoes it)."""
    from ..triton import conv_kernel

    for kernel in (conv_kernel.conv_bn_act_kernel, conv_kernel.splitk_epilogue_kernel):
        inner = kernel.fn if hasattr(kernel, "configs") else kernel  # the autotuner's function, or the kernel
        setter(inner, "run", lambda *args, **kwargs: None)


def measure(backends: list, stub: bool, calls: int, rounds: int) -> list:
    """Rows (what, backend, host us per call, device us per call or None)."""
    from .. import ops
    from ..models import resnet50
    from ..triton.aot import layer_call

    device = "cpu" if stub else "cuda"
    dtype = "float32" if stub else "float16"  # the interpreter computes in numpy; the host path is the same
    sync = (lambda: None) if stub else torch.cuda.synchronize
    rows = []
    with torch.no_grad():
        for backend in backends:
            for name in LAYERS:
                args = layer_call(name, dtype, False, batch=1, device=device)
                for t in args:
                    if isinstance(t, torch.Tensor):
                        t.normal_()
                call = lambda: ops.conv_bn_act(*args, backend)  # noqa: E731
                call()  # autotuning, weight packing, the plan
                host = per_call_us(call, calls, rounds, sync)
                rows.append((name, backend, host, None if stub else device_us(call, calls)))
            model = resnet50(backend=backend).eval().to(device, getattr(torch, dtype))
            size = 64 if stub else 224  # the stub's pooling and fc run for real on the CPU: keep them small
            x = torch.randn(1, 3, size, size, device=device, dtype=getattr(torch, dtype))
            forward = lambda: model(x)  # noqa: E731
            forward()
            host = per_call_us(forward, max(1, calls // 50), rounds, sync)
            rows.append((f"resnet50 forward, 1x3x{size}x{size}", backend, host,
                         None if stub else device_us(forward, max(1, calls // 50))))
    return rows


def default_backends(stub: bool) -> list:
    """triton; on a GPU also cuda where the extension is built, and auto (the default selection)."""
    if stub:
        return ["triton"]
    from ..backends import cuda_extension_error

    return ["triton"] + ([] if cuda_extension_error() else ["cuda"]) + ["auto"]


def run(backends: list, stub: bool, calls: int = 200, rounds: int = 7) -> list:
    """Check the set-up, measure, print the table; returns the rows."""
    if stub:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("host-time --stub needs TRITON_INTERPRET=1 in the environment (set before Python starts)")
        if backends != ["triton"]:
            raise SystemExit("host-time --stub times the triton backend only (the others cannot run without a GPU)")
        stub_triton_launches()
    elif not torch.cuda.is_available():
        raise SystemExit("host-time needs a CUDA GPU, or --stub (with TRITON_INTERPRET=1) on a machine without one")
    rows = measure(backends, stub, calls, rounds)
    mode = "stubbed launches (no GPU)" if stub else torch.cuda.get_device_name()
    print(f"host time per call, {mode}; min over {rounds} rounds")
    print(f"{'what':40} {'backend':9} {'host us':>9} {'GPU us':>9}")
    for what, backend, host, dev in rows:
        shown = "-" if dev is None else f"{dev:9.1f}"
        print(f"{what:40} {backend:9} {host:9.1f} {shown:>9}")
    return rows
