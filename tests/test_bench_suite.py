"""The benchmark suite collects its whole matrix and, without a GPU, skips every
benchmark with the reason. Run in a subprocess with CUDA hidden, so that these
checks hold on GPU machines too."""

import os
import subprocess
import sys
from pathlib import Path

from resnet_kernels.bench import matrix

ROOT = Path(__file__).resolve().parents[1]
FULL = (
    len(matrix.layer_specs(False)) * len(matrix.LAYER_PROVIDERS)
    + len(matrix.model_specs(False)) * len(matrix.MODEL_PROVIDERS)
    + len(matrix.train_specs(False)) * len(matrix.TRAIN_PROVIDERS)
)


def _pytest(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RK_BENCH_")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def _ids(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in run.stdout.splitlines() if "::" in line]


def test_collect_only_lists_the_whole_matrix():
    run = _pytest("--collect-only", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    ids = _ids(run)
    assert len(ids) == FULL == 2606
    for expected in (
        "benchmarks/test_speed_layers.py::test_layer[resnet50.layer1.0.conv2-b256-fp16-cudnn-fused]",
        "benchmarks/test_speed_layers.py::test_layer[resnext50_32x4d.layer1.0.conv2-b1-bf16-inductor]",
        "benchmarks/test_speed_models.py::test_model[resnet152-b32-bf16-cuda-graph]",
        "benchmarks/test_speed_training.py::test_train[resnet50-b256-fp16-inductor-default]",
    ):
        assert expected in ids


def test_quick_and_k_select_subsets():
    quick = _ids(_pytest("--collect-only", "-q", "--rk-quick"))
    layers = [i for i in quick if "test_layer[" in i]
    assert len(layers) == 24 * len(matrix.LAYER_PROVIDERS)
    assert all("resnet50." in i and "-b256-fp16-" in i for i in layers)
    assert len([i for i in quick if "test_model[resnet50-b256-fp16-" in i]) == len(matrix.MODEL_PROVIDERS)
    assert all("not-in-quick" in i for i in quick if "test_train[" in i)

    picked = _ids(_pytest("--collect-only", "-q", "-k", "test_layer and resnet18 and b32 and bf16 and cudnn-fused"))
    assert len(picked) == 15  # resnet18's distinct layers


def test_without_gpu_every_benchmark_is_skipped_with_the_reason():
    run = _pytest("--benchmark-only", "-q", "-rs")
    # All skipped is a success (exit code 0); 5 would mean nothing was collected.
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{FULL} skipped" in run.stdout
    assert "passed" not in run.stdout and "failed" not in run.stdout and "error" not in run.stdout
    assert "needs a CUDA GPU: torch.cuda.is_available() is False on this machine" in run.stdout
