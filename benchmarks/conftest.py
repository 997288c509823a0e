"""The benchmark suite's options, matrix and shared fixtures (see README.md).

Without a GPU every benchmark is collected and then skipped by the ``device``
fixture, with the reason.
"""

from __future__ import annotations

import gc
import os
import time

import pytest
import torch

from resnet_kernels.bench import matrix, peaks as peaks_module
from resnet_kernels.bench.environment import versions

_PEAKS = pytest.StashKey()
_START = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("resnet_kernels", "resnet_kernels benchmarks")
    group.addoption(
        "--rk-quick", action="store_true", default=os.environ.get("RK_BENCH_QUICK", "0") not in ("", "0"),
        help="only ResNet-50 at batch 256 fp16: its layers and end to end (env RK_BENCH_QUICK=1)",
    )
    group.addoption(
        "--rk-budget-s", type=float, default=float(os.environ.get("RK_BENCH_BUDGET_S", "0")),
        help="skip every benchmark that would start after this many seconds, so that a run under a "
        "time limit still ends and writes its JSON; 0: no limit (env RK_BENCH_BUDGET_S)",
    )
    group.addoption(
        "--rk-seconds", type=float, default=float(os.environ.get("RK_BENCH_SECONDS", "0.5")),
        help="device time spent in timed rounds per benchmark (10 to 200 rounds; env RK_BENCH_SECONDS)",
    )


def pytest_configure(config):
    config.stash[_START] = time.monotonic()


def pytest_generate_tests(metafunc):
    """Parametrize each benchmark over its matrix; the provider is the innermost
    parameter, so the providers of one point run one after another on one case."""
    quick = metafunc.config.getoption("rk_quick")
    kinds = (
        ("layer_spec", matrix.layer_specs, matrix.LAYER_PROVIDERS),
        ("model_spec", matrix.model_specs, matrix.MODEL_PROVIDERS),
        ("train_spec", matrix.train_specs, matrix.TRAIN_PROVIDERS),
    )
    for name, specs, providers in kinds:
        if name in metafunc.fixturenames:
            points = specs(quick)
            if points:
                metafunc.parametrize(name, points, ids=[p.id for p in points])
            else:
                skip = pytest.mark.skip(reason=f"--rk-quick measures no {name.removesuffix('_spec')} benchmarks")
                metafunc.parametrize(name, [pytest.param(None, marks=skip)], ids=["not-in-quick"])
            metafunc.parametrize("provider", providers)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    info = {"versions": versions()}
    if _PEAKS in config.stash:
        info["peaks"] = config.stash[_PEAKS].as_dict()
    machine_info["resnet_kernels"] = info


@pytest.fixture(autouse=True)
def _time_budget(request):
    budget = request.config.getoption("rk_budget_s")
    spent = time.monotonic() - request.config.stash[_START]
    if budget and spent > budget:
        pytest.skip(f"time budget spent: {spent:.0f} s of --rk-budget-s={budget:.0f}")


@pytest.fixture(autouse=True)
def _release_memory():
    """Compiled graphs, CUDA graphs and their pools go with each benchmark."""
    yield
    if torch.cuda.is_available():
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()


@pytest.fixture(scope="session")
def device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    torch.backends.cudnn.benchmark = True  # cuDNN at its best: algorithm search on each new shape
    return torch.device("cuda")


@pytest.fixture(scope="session")
def peaks(request, device) -> peaks_module.Peaks:
    """The roofline's two ceilings, measured once per session and recorded in the JSON."""
    measured = peaks_module.measure()
    request.config.stash[_PEAKS] = measured
    return measured


@pytest.fixture
def rk_seconds(request) -> float:
    return request.config.getoption("rk_seconds")
