"""report.md from pytest-benchmark JSON: the compass goals, then per model and per layer.

Speedup = baseline time / provider time (above 1: the provider is faster).
% of floor = roofline floor / measured time (100%: at the floor).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

from . import charts
from .matrix import DTYPES, LAYER_PROVIDERS, MODEL_PROVIDERS, MODELS, OURS, TRAIN_PROVIDERS
from .results import Result, Results

COMPASS = ("resnet50", "fp16", 256)


@dataclass
class Goal:
    text: str
    target: float
    value: Optional[float]  # None: not measured
    detail: str
    percent: bool = False

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        return "met" if self.value >= self.target else "not met"

    def shown(self, x: float) -> str:
        return f"{x:.0f}%" if self.percent else f"{x:.2f}x"


def _best(results: Iterable[Result], providers: Iterable[str]) -> Optional[Result]:
    wanted = set(providers)
    candidates = [r for r in results if r.provider in wanted]
    return min(candidates, key=lambda r: r.median_s) if candidates else None


def compass_goals(results: Results) -> list[Goal]:
    """ResNet-50 fp16 batch-256 inference against each goal; a baseline counts at its
    best (plain or CUDA-graphed), ours at its best provider."""
    model, dtype, batch = COMPASS
    point = [r for r in results.of("model") if (r.model, r.dtype, r.batch) == COMPASS]
    ours = _best(point, OURS)
    goals = []
    for text, target, providers in (
        ("torchvision eager (cuDNN)", 3.0, ("cudnn-eager", "cudnn-eager-graph")),
        ("torch.compile max-autotune", 1.3, ("inductor",)),
        ("BN-folded cuDNN fused ops", 1.05, ("cudnn-fused", "cudnn-fused-graph")),
    ):
        base = _best(point, providers)
        if ours is None or base is None:
            goals.append(Goal(f">= {target}x {text}", target, None, "needs ours and the baseline measured"))
            continue
        goals.append(Goal(
            f">= {target}x {text}", target, base.median_s / ours.median_s,
            f"{ours.info['img_s']:,.0f} img/s ({ours.provider}) vs {base.info['img_s']:,.0f} ({base.provider})",
        ))
    if ours is None:
        goals.append(Goal(">= 70% of the roofline floor", 70.0, None, "needs ours measured", percent=True))
    else:
        floor_img_s = batch / ours.info["floor_s"]
        goals.append(Goal(
            ">= 70% of the roofline floor", 70.0, ours.info["pct_floor"],
            f"{ours.info['img_s']:,.0f} of {floor_img_s:,.0f} img/s ({ours.provider})", percent=True,
        ))
    return goals


def _header(results: Results) -> list[str]:
    lines = ["# resnet_kernels against cuDNN and torch.compile", ""] + machine_lines(results)
    lines += [
        "",
        "Times are device time per call (CUDA events), the median of many rounds over inputs that "
        "overflow L2, after warm-up and a correctness check against float64. Speedup = baseline time / "
        "provider time; % of floor = roofline floor / time. See benchmarks/README.md.",
        "",
    ]
    return lines


def machine_lines(results: Results) -> list[str]:
    """One bullet per JSON file: GPU, date, versions, and the ceilings measured in that run."""
    lines = []
    for machine, date in zip(results.machines, results.dates):
        v = machine.get("versions", {})
        lines.append(
            f"- {v.get('gpu', 'GPU unknown')}, {date[:19]}: torch {v.get('torch', '?')}, "
            f"CUDA {v.get('cuda (torch build)', '?')}, cuDNN {v.get('cudnn', '?')}, Triton {v.get('triton', '?')}"
        )
        p = machine.get("peaks")
        if p:
            gemm = ", ".join(f"{k} {f / 1e12:.0f}" for k, f in p["flops"].items())
            lines.append(
                f"  - measured ceilings: GEMM TFLOP/s {gemm}; copy {p['bandwidth'] / 1e12:.2f} TB/s "
                f"(read + write); L2 {p['l2_bytes'] / 1e6:.0f} MB"
            )
    return lines


def _compass_section(goals: list[Goal]) -> list[str]:
    model, dtype, batch = COMPASS
    return [f"## Goals: {model}, {dtype}, batch {batch}, inference", ""] + goals_table(goals) + [""]


def goals_table(goals: list[Goal]) -> list[str]:
    lines = ["| goal | now | status | detail |", "| --- | --- | --- | --- |"]
    for g in goals:
        now = "—" if g.value is None else g.shown(g.value)
        lines.append(f"| {g.text} | {now} | {g.status} | {g.detail} |")
    return lines


def _order(key: tuple) -> tuple:
    """(model, dtype, batch) in the matrix's order: models as listed, fp16 first, small batches first."""
    model, dtype, batch = key
    known = MODELS.index(model) if model in MODELS else len(MODELS)
    return (known, model, DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES), batch)


def _groups(results: list[Result]) -> dict[tuple, list[Result]]:
    groups: dict[tuple, list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.model, r.dtype, r.batch)].append(r)
    return dict(sorted(groups.items(), key=lambda item: _order(item[0])))


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def _ratio(base: Optional[Result], r: Result) -> str:
    return "—" if base is None else f"{base.median_s / r.median_s:.2f}x"


def _models_section(results: Results) -> list[str]:
    lines = ["## End to end, inference", ""]
    for (model, dtype, batch), rs in _groups(results.of("model")).items():
        lines += [f"### {model}, {dtype}, batch {batch}", ""] + model_table(rs) + [""]
    return lines


def model_table(rs: list[Result]) -> list[str]:
    """The end-to-end table of one (model, dtype, batch): a row per provider, then the floor."""
    by = {r.provider: r for r in rs}
    eager, fused = by.get("cudnn-eager"), by.get("cudnn-fused")
    lines = ["| provider | img/s | ms / batch | vs cudnn-eager | vs cudnn-fused | % of floor | peak GB "
             "| first call s | rel. error (tol.) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for provider in (p for p in MODEL_PROVIDERS if p in by):
        r = by[provider]
        i = r.info
        lines.append(
            f"| {provider} | {i['img_s']:,.0f} | {_ms(r.median_s)} | {_ratio(eager, r)} | "
            f"{_ratio(fused, r)} | {i['pct_floor']:.0f}% | {i['peak_mem_bytes'] / 1e9:.2f} | "
            f"{i['first_call_s']:.1f} | {i['rel_err']:.1e} ({i['tol']:.0e}) |"
        )
    floor = next(iter(by.values())).info["floor_s"]
    batch = next(iter(by.values())).batch
    return lines + ["", f"Roofline floor: {batch / floor:,.0f} img/s ({_ms(floor)} ms per batch)."]


def _layer_cell(r: Optional[Result], eager: Optional[Result], fused: Optional[Result]) -> str:
    if r is None:
        return "—"
    cell = f"{r.median_s * 1e6:,.1f}<br>{_ratio(eager, r)} · {_ratio(fused, r)} · {r.info['pct_floor']:.0f}%"
    return cell + (f"<br>{r.info['kernel']}" if r.info.get("kernel") else "")


def _layers_section(results: Results) -> list[str]:
    lines = ["## Per layer", "",
             "Each cell: µs per call, then speedup vs cudnn-eager · vs cudnn-fused · % of the layer's floor "
             "(and, for the cuda providers, the kernel that ran: tile, loads, wgmma-ws = persistent). "
             "The last row weighs each layer by how often the model runs it.", ""]
    for (model, dtype, batch), rs in _groups(results.of("layer")).items():
        rows: dict[str, dict[str, Result]] = defaultdict(dict)
        for r in rs:
            rows[r.info["layer"]][r.provider] = r
        providers = [p for p in LAYER_PROVIDERS if any(p in row for row in rows.values())]
        lines += [f"### {model}, {dtype}, batch {batch}", "",
                  "| layer | n | shape | floor µs | " + " | ".join(providers) + " |",
                  "| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in providers) + " |"]
        totals: dict[str, float] = defaultdict(float)
        complete = {p: True for p in providers}
        floor_total = 0.0
        for name, row in rows.items():
            info = next(iter(row.values())).info
            floor_total += info["count"] * info["floor_s"]
            for p in providers:
                if p in row:
                    totals[p] += info["count"] * row[p].median_s
                else:
                    complete[p] = False
            cells = [_layer_cell(row.get(p), row.get("cudnn-eager"), row.get("cudnn-fused")) for p in providers]
            lines.append(f"| {name} | {info['count']} | {info['shape']} | {info['floor_s'] * 1e6:,.1f} | "
                         + " | ".join(cells) + " |")
        total_cells = []
        for p in providers:
            if not complete[p]:
                total_cells.append("incomplete")
                continue
            eager, fused = totals.get("cudnn-eager"), totals.get("cudnn-fused")
            vs_eager = f"{eager / totals[p]:.2f}x" if complete.get("cudnn-eager") else "—"
            vs_fused = f"{fused / totals[p]:.2f}x" if complete.get("cudnn-fused") else "—"
            total_cells.append(f"{totals[p] * 1e6:,.0f}<br>{vs_eager} · {vs_fused} · "
                               f"{100 * floor_total / totals[p]:.0f}%")
        lines += [f"| all convs | | | {floor_total * 1e6:,.0f} | " + " | ".join(total_cells) + " |", ""]
    return lines


def _training_section(results: Results) -> list[str]:
    groups = _groups(results.of("train"))
    if not groups:
        return []
    lines = ["## Training step (forward, backward, SGD; AMP, channels_last)", ""]
    for (model, dtype, batch), rs in groups.items():
        by = {r.provider: r for r in rs}
        eager = by.get("cudnn-eager")
        lines += [f"### {model}, {dtype}, batch {batch}", "",
                  "| provider | img/s | ms / step | vs cudnn-eager | peak GB | first call s | grad rel. error (tol.) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for provider in (p for p in TRAIN_PROVIDERS if p in by):
            r, i = by[provider], by[provider].info
            lines.append(f"| {provider} | {i['img_s']:,.0f} | {r.median_s * 1e3:.1f} | {_ratio(eager, r)} | "
                         f"{i['peak_mem_bytes'] / 1e9:.2f} | {i['first_call_s']:.1f} | "
                         f"{i['rel_err']:.1e} ({i['tol']:.0e}) |")
        lines.append("")
    return lines


def write(results: Results, out_dir: str) -> tuple[str, list[Goal]]:
    """Write report.md and the charts into ``out_dir``; (path of report.md, the goals)."""
    os.makedirs(out_dir, exist_ok=True)
    goals = compass_goals(results)
    images = charts.write_all(results, out_dir)
    lines = _header(results) + _compass_section(goals)
    if images:
        lines += ["## Charts", ""] + [f"![{name}]({name})" for name in images] + [""]
    lines += _models_section(results) + _training_section(results) + _layers_section(results)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, goals
