"""The two ceilings of the roofline, measured on the device in the same run.

Datasheet rates are leads, not measurements: the peak FLOP/s is what a large
GEMM through torch.matmul (cuBLAS) reaches on random data in each dtype, and
the bandwidth is what a large device-to-device copy reaches, counting bytes
read plus bytes written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .data import DTYPES
from .timing import Measurement

GEMM_SIZE = 8192  # 1.1 TFLOP per product: ~1.4 ms on an H100, far from launch overhead
COPY_BYTES = 2**30  # 1 GiB each way, 20x the H100's L2


@dataclass(frozen=True)
class Peaks:
    gpu: str
    l2_bytes: int
    flops: dict  # dtype name -> FLOP/s
    bandwidth: float  # bytes/s, read + written

    def as_dict(self) -> dict:
        return asdict(self)


def gemm_flops(dtype: torch.dtype, size: int = GEMM_SIZE, rounds: int = 20) -> float:
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    seconds = Measurement(torch.matmul, [(a, b)]).median(rounds)
    return 2.0 * size**3 / seconds


def copy_bandwidth(nbytes: int = COPY_BYTES, rounds: int = 20) -> float:
    src = torch.randn(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    seconds = Measurement(torch.Tensor.copy_, [(dst, src)]).median(rounds)
    return 2.0 * nbytes / seconds


def measure() -> Peaks:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return Peaks(
        gpu=props.name,
        l2_bytes=int(props.L2_cache_size),
        flops={name: gemm_flops(dtype) for name, dtype in DTYPES.items()},
        bandwidth=copy_bandwidth(),
    )
