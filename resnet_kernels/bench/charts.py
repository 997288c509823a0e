"""PNG charts for the report (matplotlib, Agg backend: no display needed).

- layers-<model>-<dtype>-b<batch>.png: per layer, each provider's speedup over cudnn-eager.
- models-<dtype>.png: img/s per model, one panel per batch size.
"""

from __future__ import annotations

import os
from collections import defaultdict

from .matrix import LAYER_PROVIDERS, MODEL_PROVIDERS
from .results import Results

# One color per provider name, the same in every chart.
_PALETTE = ("#1f77b4", "#aec7e8", "#d62728", "#ff9896", "#9467bd", "#7f7f7f", "#c7c7c7", "#2ca02c",
            "#98df8a", "#ffbb78", "#ff7f0e")
COLORS = dict(zip(MODEL_PROVIDERS, _PALETTE))
COLORS["cuda-wgmma"] = COLORS["cuda-wgmma-graph"]  # the layer provider of the same kernel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, label=name, color=COLORS.get(name))
    ax.set_xticks(range(len(labels)))
    ax.grid(axis="y", alpha=0.3)


def layer_chart(results: Results, model: str, dtype: str, batch: int, path: str) -> None:
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for r in results.of("layer"):
        if (r.model, r.dtype, r.batch) == (model, dtype, batch):
            rows[r.info["layer"]][r.provider] = r.median_s
    names = [n for n, row in rows.items() if "cudnn-eager" in row]
    providers = [p for p in LAYER_PROVIDERS if p != "cudnn-eager" and any(p in rows[n] for n in names)]
    series = {p: [rows[n]["cudnn-eager"] / rows[n][p] if p in rows[n] else 0.0 for n in names] for p in providers}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(names) + 2), 5))
    _grouped_bars(ax, names, series)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("speedup over cudnn-eager (higher is better)")
    ax.set_title(f"{model} layers, {dtype}, batch {batch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_chart(results: Results, dtype: str, path: str) -> None:
    points = [r for r in results.of("model") if r.dtype == dtype]
    batches = sorted({r.batch for r in points})
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 4.8), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        at = [r for r in points if r.batch == batch]
        models = list(dict.fromkeys(r.model for r in at))
        img_s = {(r.model, r.provider): r.info["img_s"] for r in at}
        providers = [p for p in MODEL_PROVIDERS if any((m, p) in img_s for m in models)]
        _grouped_bars(ax, models, {p: [img_s.get((m, p), 0.0) for m in models] for p in providers})
        ax.set_xticklabels(models, rotation=20, ha="right", fontsize=9)
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("images / s (higher is better)")
    # One legend for all panels, below them, so that it hides no bar.
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(f"End-to-end inference, {dtype}")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: Results, out_dir: str) -> list[str]:
    """Every chart the results allow; the file names, relative to ``out_dir``."""
    names = []
    for model, dtype, batch in sorted({(r.model, r.dtype, r.batch) for r in results.of("layer")}):
        name = f"layers-{model}-{dtype}-b{batch}.png"
        layer_chart(results, model, dtype, batch, os.path.join(out_dir, name))
        names.append(name)
    for dtype in sorted({r.dtype for r in results.of("model")}):
        name = f"models-{dtype}.png"
        model_chart(results, dtype, os.path.join(out_dir, name))
        names.append(name)
    return names
