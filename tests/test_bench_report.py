"""The benchmark report (python -m resnet_kernels.bench report) on synthetic pytest-benchmark JSON.

The records are made by the same functions the suite uses (results.py), with
made-up times, so the writer and the reader of the JSON are tested together.
"""

import json
from types import SimpleNamespace

import pytest

from resnet_kernels.bench.__main__ import main
from resnet_kernels.bench.layers import distinct_layers
from resnet_kernels.bench.matrix import LayerSpec, ModelSpec
from resnet_kernels.bench.peaks import Peaks
from resnet_kernels.bench.results import layer_record, load, model_record, train_record

PEAKS = Peaks("NVIDIA H100 80GB HBM3", 50_331_648, {"fp16": 790e12, "bf16": 790e12}, 3.0e12)
MEASUREMENT = SimpleNamespace(first_call_s=1.5, graphed=False, arg_sets=[()], calls_per_round=2)
CHECK = (1e-3, 2e-3)

# ResNet-50 fp16 batch 256: seconds per batch. Best ours: cuda-graph, 9.5 ms.
MODEL_TIMES = {
    "cudnn-eager": 25e-3, "cudnn-eager-graph": 24e-3, "cudnn-fused": 12e-3, "inductor": 11e-3,
    "triton": 11e-3, "cuda": 10e-3, "cuda-graph": 9.5e-3,
}
LAYER_SPEEDS = {"cudnn-eager": 1.0, "cudnn-fused": 1.6, "inductor": 1.5, "triton": 1.8, "cuda": 2.0}


def _bench(record, median_s):
    return {"name": f"test[{record['provider']}]", "stats": {"median": median_s}, "extra_info": record}


def _json(tmp_path, name, benchmarks):
    data = {
        "machine_info": {"resnet_kernels": {"versions": {"gpu": PEAKS.gpu, "torch": "2.11.0"},
                                            "peaks": PEAKS.as_dict()}},
        "datetime": "2026-11-23T12:00:00+00:00",
        "benchmarks": benchmarks,
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _model_benchmarks(times):
    spec = ModelSpec("resnet50", 256, "fp16")
    return [_bench(model_record(spec, p, MEASUREMENT, t, PEAKS, CHECK, 7, 3_000_000_000), t) for p, t in times.items()]


def _layer_benchmarks():
    benchmarks = []
    for m in distinct_layers("resnet50")[:3]:
        spec = LayerSpec("resnet50", m.layer, m.count, 256, "fp16")
        eager_s = 100e-6
        for provider, speed in LAYER_SPEEDS.items():
            t = eager_s / speed
            kernel = "wgmma-ws 128x256 tma_ab" if provider == "cuda" else None  # the plan's label (cuda providers)
            benchmarks.append(_bench(layer_record(spec, provider, MEASUREMENT, t, PEAKS, CHECK, 7, kernel), t))
    return benchmarks


def _train_benchmarks():
    spec = ModelSpec("resnet50", 256, "fp16")
    times = {"cudnn-eager": 0.2, "inductor-default": 0.16, "cuda": 0.14}
    return [_bench(train_record(spec, p, MEASUREMENT, t, CHECK, 7, 60.0, 20_000_000_000), t) for p, t in times.items()]


def test_report_tables_goals_and_charts(tmp_path, capsys):
    path = _json(tmp_path, "run.json", _model_benchmarks(MODEL_TIMES) + _layer_benchmarks() + _train_benchmarks())
    out = tmp_path / "report"
    assert main(["report", path, "--out", str(out)]) == 0
    text = (out / "report.md").read_text()

    # Goals: ours at its best (cuda-graph, 9.5 ms) against each baseline at its best.
    assert "| >= 3.0x torchvision eager (cuDNN) | 2.53x | not met |" in text  # 24 / 9.5
    assert "| >= 1.3x torch.compile max-autotune | 1.16x | not met |" in text  # 11 / 9.5
    assert "| >= 1.05x BN-folded cuDNN fused ops | 1.26x | met |" in text  # 12 / 9.5
    floor_pct = 100 * 256 / 47_704 / 9.5e-3
    assert f"| >= 70% of the roofline floor | {floor_pct:.0f}% | not met |" in text
    assert "26,947 img/s (cuda-graph)" in text

    # End to end: one row per provider, speedups against the plain baselines.
    assert "| cuda-graph | 26,947 | 9.50 | 2.63x | 1.26x |" in text
    # Per layer: every provider's time, speedups vs cudnn-eager and cudnn-fused, % of floor.
    assert "| layer1.0.conv2 | 3 | 64>64 3x3/1 56x56 |" in text
    assert "50.0<br>2.00x · 1.25x ·" in text  # cuda: 100 us / 2.0
    assert "%<br>wgmma-ws 128x256 tma_ab |" in text  # ... and which kernel ran
    assert text.count("<br>wgmma-ws") == 3  # only the cuda cells, one per layer
    assert "| all convs |" in text
    # Training.
    assert "| cuda | 1,829 | 140.0 | 1.43x | 20.00 | 60.0 |" in text

    for chart in ("layers-resnet50-fp16-b256.png", "models-fp16.png"):
        assert f"![{chart}]({chart})" in text
        data = (out / chart).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    printed = capsys.readouterr().out
    assert "report.md" in printed and "not met" in printed


def test_goals_not_measured_without_ours(tmp_path):
    path = _json(tmp_path, "eager.json", _model_benchmarks({"cudnn-eager": 25e-3}))
    assert main(["report", path]) == 0  # writes next to the JSON
    text = (tmp_path / "report.md").read_text()
    assert text.count("| not measured |") == 4


def test_later_file_replaces_the_same_benchmark(tmp_path):
    first = _json(tmp_path, "a.json", _model_benchmarks({"cudnn-eager": 25e-3, "cuda": 10e-3}))
    second = _json(tmp_path, "b.json", _model_benchmarks({"cuda": 8e-3}))
    results = load([first, second])
    times = {r.provider: r.median_s for r in results.of("model")}
    assert times == {"cudnn-eager": 25e-3, "cuda": 8e-3}
    assert len(results.machines) == 2


def test_json_without_records_is_an_error(tmp_path, capsys):
    path = _json(tmp_path, "empty.json", [{"name": "other", "stats": {"median": 1.0}, "extra_info": {}}])
    assert main(["report", path]) == 1
    assert "no resnet_kernels benchmark records" in capsys.readouterr().err


def test_report_needs_a_command():
    with pytest.raises(SystemExit):
        main([])


# --- the README's results block (python -m resnet_kernels.bench readme) -------------------------

README = """# project

intro

<!-- results: start (python -m resnet_kernels.bench readme) -->
**Results.** None yet.
<!-- results: end -->

## Layout
"""


def test_readme_block_is_rewritten_from_a_results_folder(tmp_path, capsys):
    run = tmp_path / "benchmarks" / "results" / "h100-2026-11-23"
    run.mkdir(parents=True)
    path = _json(run, "bench-quick.json", _model_benchmarks(MODEL_TIMES) + _layer_benchmarks())
    assert main(["report", path]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["readme", str(run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# project\n\nintro\n\n<!-- results: start") and text.endswith("<!-- results: end -->\n\n## Layout\n")
    assert "None yet" not in text
    assert "[benchmarks/results/h100-2026-11-23/report.md](benchmarks/results/h100-2026-11-23/report.md)" in text
    assert "NVIDIA H100 80GB HBM3, 2026-11-23T12:00:00: torch 2.11.0" in text
    assert "| >= 1.05x BN-folded cuDNN fused ops | 1.26x | met |" in text
    assert "| cuda-graph | 26,947 | 9.50 | 2.63x | 1.26x |" in text
    for chart in ("models-fp16.png", "layers-resnet50-fp16-b256.png"):
        assert f"![{chart}](benchmarks/results/h100-2026-11-23/{chart})" in text
    # Run again: the block is replaced, not added to.
    assert main(["readme", str(run), "--readme", str(readme)]) == 0
    assert readme.read_text() == text
    assert "updated" in capsys.readouterr().out


def test_readme_needs_records_and_the_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no block here\n")
    assert main(["readme", str(tmp_path), "--readme", str(readme)]) == 1
    assert "no bench-*.json" in capsys.readouterr().err
    _json(tmp_path, "bench-quick.json", _model_benchmarks({"cudnn-eager": 25e-3}))
    assert main(["readme", str(tmp_path), "--readme", str(readme)]) == 1
    err = capsys.readouterr().err
    assert "has no results block" in err and "<!-- results: end -->" in err
    assert readme.read_text() == "# no block here\n"


def test_the_repository_readme_has_the_results_block():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        text = f.read()
    from resnet_kernels.bench.readme import END, START

    assert text.count(START) == 1 and text.count(END) == 1 and text.index(START) < text.index(END)
