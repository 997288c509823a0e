"""The README's results block, rewritten from a recorded run.

    python -m resnet_kernels.bench readme benchmarks/results/<gpu>-<date> [--readme README.md]

README.md keeps the latest recorded results between two marker lines (START and
END below). This replaces what lies between them with: the run's folder and
report, the GPU, date and versions, the compass goals, the ResNet-50 fp16
batch-256 end-to-end table, and the charts the report drew in that folder
(linked relative to the README). The rest of the README is left as it is.
"""

from __future__ import annotations

import glob
import os

from . import report
from .results import Results, load

START = "<!-- results: start (python -m resnet_kernels.bench readme) -->"
END = "<!-- results: end -->"


def results_block(results: Results, results_dir: str, readme_dir: str) -> list[str]:
    """The lines between the markers for the run in `results_dir`."""
    rel = os.path.relpath(results_dir, readme_dir).replace(os.sep, "/")
    model, dtype, batch = report.COMPASS
    lines = [f"**Results** (latest recorded run: [{rel}/report.md]({rel}/report.md), every layer, model and "
             "batch there):", ""]
    lines += report.machine_lines(results) + ["", f"Goals, {model} {dtype} batch {batch} inference:", ""]
    lines += report.goals_table(report.compass_goals(results))
    compass = [r for r in results.of("model") if (r.model, r.dtype, r.batch) == report.COMPASS]
    if compass:
        lines += ["", f"{model}, {dtype}, batch {batch}, end to end:", ""] + report.model_table(compass)
    for chart in ("models-fp16.png", f"layers-{model}-{dtype}-b{batch}.png"):
        if os.path.exists(os.path.join(results_dir, chart)):
            lines += ["", f"![{chart}]({rel}/{chart})"]
    return lines


def update(readme_path: str, results_dir: str) -> int:
    """Rewrite the block of `readme_path` from the bench-*.json of `results_dir`; the number of
    result records used. Raises ValueError, naming what is missing, when the folder has no
    records or the README lacks the markers."""
    files = sorted(glob.glob(os.path.join(results_dir, "bench-*.json")))
    if not files:
        raise ValueError(f"no bench-*.json in {results_dir}: run the benchmarks into that folder first")
    results = load(files)
    if not results.results:
        raise ValueError(f"no resnet_kernels benchmark records in {', '.join(files)}")
    with open(readme_path) as f:
        text = f.read()
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{readme_path} has no results block: put the lines\n{START}\n{END}\n"
                         "where the results should go")
    block = results_block(results, results_dir, os.path.dirname(os.path.abspath(readme_path)))
    new = text[:start] + START + "\n" + "\n".join(block) + "\n" + text[end:]
    with open(readme_path, "w") as f:
        f.write(new)
    return len(results.results)
