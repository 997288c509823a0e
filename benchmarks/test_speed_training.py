"""A training step (forward, backward, SGD) under AMP, channels_last.

Correctness: the gradients of one step against a float32 reference with TF32
off (a float64 ResNet-50 at batch 256 does not fit in GPU memory), within twice
torchvision's own AMP error.
"""

import time

import pytest
import torch

from resnet_kernels.bench.accuracy import check
from resnet_kernels.bench.cases import train_case
from resnet_kernels.bench.data import DTYPES
from resnet_kernels.bench.layer_providers import Unavailable
from resnet_kernels.bench.model_providers import train_step, training_model
from resnet_kernels.bench.results import train_record
from resnet_kernels.bench.timing import Measurement, device_clock


@pytest.fixture(scope="module", autouse=True)
def _drop_cached_case():
    yield
    train_case.cache_clear()


@pytest.mark.benchmark(timer=device_clock)
def test_train(benchmark, device, peaks, rk_seconds, train_spec, provider):
    case = train_case(train_spec, peaks.l2_bytes)
    dtype = DTYPES[train_spec.dtype]
    before = torch.cuda.memory_allocated()
    try:
        run, owner = training_model(provider, case.device_model(), case.batches[0][0])
    except Unavailable as why:
        pytest.skip(str(why))
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    grads = case.grads(owner, run, dtype)
    torch.cuda.synchronize()
    first_call_s = time.perf_counter() - start  # compilation included, for torch.compile
    verdict = check(f"{provider} on {train_spec.id}", grads, case.ref_grads, case.baseline_error, dtype)
    del grads

    m = Measurement(train_step(run, dtype), case.batches)
    benchmark.group = f"training {train_spec.id}"
    benchmark.pedantic(m.round, rounds=m.rounds_for(rk_seconds), warmup_rounds=1)
    if benchmark.disabled:
        return
    peak = torch.cuda.max_memory_allocated() - before
    benchmark.extra_info.update(
        train_record(train_spec, provider, m, benchmark.stats.stats.median, verdict, case.seed, first_call_s, peak)
    )
