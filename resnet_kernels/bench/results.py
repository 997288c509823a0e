"""The record of one measurement: written by the suite into pytest-benchmark's
``extra_info``, read back by the report from the JSON (``--benchmark-json``).

The time itself is pytest-benchmark's own ``stats.median``: device seconds per
call (timing.device_clock). Everything else a reader needs is in the record:
what ran, the roofline floor computed with the ceilings measured in that run,
and the outcome of the correctness check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

from . import roofline
from ..layer_shapes import model_layers
from .layers import ITEMSIZE, describe

if TYPE_CHECKING:
    from .matrix import LayerSpec, ModelSpec
    from .peaks import Peaks
    from .timing import Measurement


def _common(kind: str, model: str, batch: int, dtype: str, provider: str, m: "Measurement", check, seed: int) -> dict:
    err, tol = check
    return {
        "kind": kind, "model": model, "batch": batch, "dtype": dtype, "provider": provider,
        "first_call_s": m.first_call_s, "graphed": m.graphed, "sets": len(m.arg_sets),
        "calls_per_round": m.calls_per_round, "rel_err": err, "tol": tol, "seed": seed,
    }


def _speed(flops: int, nbytes: int, median_s: float, peaks: "Peaks", dtype: str) -> dict:
    peak_flops = peaks.flops[dtype]
    floor = roofline.floor_s(flops, nbytes, peak_flops, peaks.bandwidth)
    return {
        "flops": flops, "bytes": nbytes, "floor_s": floor,
        "bound": roofline.limiter(flops, nbytes, peak_flops, peaks.bandwidth),
        "tflops": flops / median_s / 1e12, "gbps": nbytes / median_s / 1e9,
        "pct_floor": roofline.percent_of_floor(median_s, floor),
    }


def layer_record(spec: "LayerSpec", provider: str, m: "Measurement", median_s: float, peaks: "Peaks",
                 check: tuple[float, float], seed: int, kernel: Optional[str] = None) -> dict:
    """`kernel`: which of our kernels ran (kernel_choice.plan_label for the cuda providers,
    triton_choice.triton_label for triton)."""
    layer, n = spec.layer, spec.batch
    record = _common("layer", spec.model, n, spec.dtype, provider, m, check, seed)
    record.update(layer=layer.name, shape=describe(layer), count=spec.count)
    if kernel is not None:
        record["kernel"] = kernel
    record.update(_speed(layer.flops(n), layer.min_bytes(n, ITEMSIZE[spec.dtype]), median_s, peaks, spec.dtype))
    return record


def model_record(spec: "ModelSpec", provider: str, m: "Measurement", median_s: float, peaks: "Peaks",
                 check: tuple[float, float], seed: int, peak_mem_bytes: int) -> dict:
    layers, n = model_layers(spec.model), spec.batch
    flops = sum(layer.flops(n) for layer in layers)
    nbytes = sum(layer.min_bytes(n, ITEMSIZE[spec.dtype]) for layer in layers)
    record = _common("model", spec.model, n, spec.dtype, provider, m, check, seed)
    record.update(_speed(flops, nbytes, median_s, peaks, spec.dtype))
    # The model's floor sums its layers' floors (each layer is compute- or memory-bound
    # on its own), which is above max(total FLOPs / peak, total bytes / bandwidth).
    floor = roofline.model_floor_s(layers, n, ITEMSIZE[spec.dtype], peaks.flops[spec.dtype], peaks.bandwidth)
    record.update(floor_s=floor, pct_floor=roofline.percent_of_floor(median_s, floor), bound="per layer",
                  img_s=n / median_s, peak_mem_bytes=peak_mem_bytes)
    return record


def train_record(spec: "ModelSpec", provider: str, m: "Measurement", median_s: float,
                 check: tuple[float, float], seed: int, first_call_s: float, peak_mem_bytes: int) -> dict:
    record = _common("train", spec.model, spec.batch, spec.dtype, provider, m, check, seed)
    # The first call here is the correctness check's forward/backward (compilation included).
    record.update(first_call_s=first_call_s, img_s=spec.batch / median_s, peak_mem_bytes=peak_mem_bytes)
    return record


# --- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    kind: str
    model: str
    batch: int
    dtype: str
    provider: str
    median_s: float
    info: dict


@dataclass
class Results:
    results: list[Result]
    machines: list[dict]  # machine_info["resnet_kernels"] of each file (versions, peaks)
    dates: list[str]

    def of(self, kind: str) -> list[Result]:
        return [r for r in self.results if r.kind == kind]


def load(paths: Iterable[str]) -> Results:
    """Records from one or more pytest-benchmark JSON files; a later file's
    measurement replaces an earlier one of the same benchmark."""
    by_key: dict[tuple, Result] = {}
    machines, dates = [], []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        machines.append(data.get("machine_info", {}).get("resnet_kernels", {}))
        dates.append(data.get("datetime", ""))
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info", {})
            if "kind" not in info:
                continue
            result = Result(info["kind"], info["model"], int(info["batch"]), info["dtype"], info["provider"],
                            float(bench["stats"]["median"]), info)
            key = (result.kind, result.model, info.get("layer"), result.batch, result.dtype, result.provider)
            by_key[key] = result
    return Results(list(by_key.values()), machines, dates)
