"""End-to-end inference: images/s of whole models, and the GPU memory each needs."""

import pytest
import torch

from resnet_kernels.bench.accuracy import check
from resnet_kernels.bench.cases import ROWS_CHECKED, model_case
from resnet_kernels.bench.data import DTYPES
from resnet_kernels.bench.layer_providers import Unavailable
from resnet_kernels.bench.model_providers import inference_model
from resnet_kernels.bench.results import model_record
from resnet_kernels.bench.timing import Measurement, device_clock


@pytest.fixture(scope="module", autouse=True)
def _drop_cached_case():
    yield
    model_case.cache_clear()


@pytest.mark.benchmark(timer=device_clock)
def test_model(benchmark, device, peaks, rk_seconds, model_spec, provider):
    case = model_case(model_spec, peaks.l2_bytes)
    dtype = DTYPES[model_spec.dtype]
    before = torch.cuda.memory_allocated()  # the input batches and the reference
    try:
        model, graph = inference_model(provider, case.device_model(dtype), case.images[0])
    except Unavailable as why:
        pytest.skip(str(why))
    # Peak memory from here on: weights, activations, workspaces, CUDA graph pools and,
    # for torch.compile, its autotuning scratch.
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        m = Measurement(model, [(x,) for x in case.images], graph=graph)
        verdict = check(f"{provider} on {model_spec.id}", m.output()[:ROWS_CHECKED], case.ref,
                        case.baseline_error, dtype)
        benchmark.group = f"models b{model_spec.batch} {model_spec.dtype}"
        benchmark.pedantic(m.round, rounds=m.rounds_for(rk_seconds), warmup_rounds=1)
    if benchmark.disabled:
        return
    peak = torch.cuda.max_memory_allocated() - before
    benchmark.extra_info.update(
        model_record(model_spec, provider, m, benchmark.stats.stats.median, peaks, verdict, case.seed, peak)
    )
