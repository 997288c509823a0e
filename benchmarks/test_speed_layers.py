"""Every distinct conv(+BN)(+add)(+ReLU) layer, one provider at a time.

All providers are replayed from a CUDA graph over input sets that overflow
L2 (timing.py, data.py), after their output passed the tolerance rule.
"""

import pytest

from resnet_kernels.bench.accuracy import check
from resnet_kernels.bench.cases import layer_case
from resnet_kernels.bench.data import DTYPES
from resnet_kernels.bench.kernel_choice import WGMMA, plan_label
from resnet_kernels.bench.layer_providers import Unavailable, layer_provider
from resnet_kernels.bench.matrix import OURS
from resnet_kernels.bench.results import layer_record
from resnet_kernels.bench.timing import Measurement, device_clock
from resnet_kernels.bench.triton_choice import triton_label


@pytest.fixture(scope="module", autouse=True)
def _drop_cached_case():
    yield
    layer_case.cache_clear()


@pytest.mark.benchmark(timer=device_clock)
def test_layer(benchmark, device, peaks, rk_seconds, layer_spec, provider):
    case = layer_case(layer_spec, peaks.l2_bytes)
    try:
        impl = layer_provider(provider, layer_spec.layer, case.sets[0].x)
    except Unavailable as why:
        pytest.skip(str(why))
    arg_sets = [impl.prepare(inputs) for inputs in case.sets]
    try:
        m = Measurement(impl.fn, arg_sets, graph=True)
    except RuntimeError as err:
        if provider in OURS:
            raise
        pytest.skip(f"{provider} cannot run {layer_spec.id}: {err}")
    verdict = check(f"{provider} on {layer_spec.id}", m.output(), case.ref, case.baseline_error,
                    DTYPES[layer_spec.dtype])

    benchmark.group = f"layers {layer_spec.model} b{layer_spec.batch} {layer_spec.dtype}"
    benchmark.pedantic(m.round, rounds=m.rounds_for(rk_seconds), warmup_rounds=1)
    if benchmark.disabled:  # --benchmark-disable: the correctness check alone
        return
    kernel = None
    if provider in ("cuda", "cuda-wgmma"):  # which of the extension's kernels ran
        kernel = plan_label(layer_spec.layer, case.sets[0].x, WGMMA if provider == "cuda-wgmma" else None)
    elif provider == "triton":  # which autotuned tile ran
        kernel = triton_label(layer_spec.layer, case.sets[0].x)
    benchmark.extra_info.update(
        layer_record(layer_spec, provider, m, benchmark.stats.stats.median, peaks, verdict, case.seed, kernel)
    )
