"""Device time of a callable: CUDA events, CUDA graphs, the median of many rounds.

A *round* is one pass over every input set (repeated until it lasts at least
``min_round_s``, so that event resolution and launch jitter do not matter);
its time divided by the number of calls is one sample. Warm-up runs first and
outside the samples: the first call (torch.compile, Triton autotuning,
cudnn.benchmark's algorithm search) is timed separately as ``first_call_s``.

pytest-benchmark integration: :func:`device_clock` is a clock that advances
only by the device time that :meth:`Measurement.round` measures, one call's
share per round. Given to pytest-benchmark as its timer
(``@pytest.mark.benchmark(timer=device_clock)``) with
``benchmark.pedantic(m.round, iterations=1)``, every statistic pytest-benchmark
reports (min, median, IQR, ...) is device seconds per call, with neither host
overhead nor synchronisation in it. Host overhead that a provider really has
(an eager model launching kernels from Python) still shows, as the device idles
between the events while the host enqueues work.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import torch

_device_seconds = 0.0


def device_clock() -> float:
    """Device seconds measured by Measurement.round so far (a pytest-benchmark timer)."""
    return _device_seconds


class Measurement:
    """``fn(*args)`` for each ``args`` in ``arg_sets``, prepared for timing.

    With ``graph=True`` one round is captured into a CUDA graph and replayed,
    which removes launch gaps: the device time of the kernels alone.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        arg_sets: Sequence[tuple],
        *,
        graph: bool = False,
        min_round_s: float = 1e-3,
        warmup_passes: int = 3,
    ) -> None:
        self.fn, self.arg_sets = fn, list(arg_sets)
        self.graphed = graph
        start = time.perf_counter()
        fn(*self.arg_sets[0])
        torch.cuda.synchronize()
        self.first_call_s = time.perf_counter() - start
        # Warm up on a side stream before a capture, as torch.cuda.graph asks; a model
        # compiled with CUDA graphs of its own (cudagraph trees) stays on the current one.
        stream = torch.cuda.Stream() if graph else torch.cuda.current_stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup_passes):
                self._pass()
        torch.cuda.current_stream().wait_stream(stream)
        self.repeats = max(1, math.ceil(min_round_s / self._time(self._pass)))
        self.calls_per_round = self.repeats * len(self.arg_sets)
        self._graph = None
        if graph:
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                # Keeps the first call's output alive, so that output() can read what a replay wrote.
                self._graph_output = self._rounds_body()
        self.round_s = self._time(self._run_round)

    def _pass(self) -> Any:
        first = self.fn(*self.arg_sets[0])
        for args in self.arg_sets[1:]:
            self.fn(*args)
        return first

    def _rounds_body(self) -> Any:
        first = self._pass()
        for _ in range(self.repeats - 1):
            self._pass()
        return first

    def _run_round(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._rounds_body()

    @staticmethod
    def _time(work: Callable[[], Any]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def output(self) -> Any:
        """The result for the first input set, computed the way the timed rounds compute it."""
        if self._graph is None:
            return self.fn(*self.arg_sets[0])
        self._graph.replay()
        torch.cuda.synchronize()
        return self._graph_output

    def round(self) -> float:
        """Run one round; device seconds per call (also added to device_clock)."""
        global _device_seconds
        per_call = self._time(self._run_round) / self.calls_per_round
        _device_seconds += per_call
        return per_call

    def rounds_for(self, seconds: float, low: int = 10, high: int = 200) -> int:
        """How many rounds fill about ``seconds`` of device time (between low and high)."""
        return max(low, min(high, math.ceil(seconds / self.round_s)))

    def median(self, rounds: int) -> float:
        """Median device seconds per call over ``rounds`` rounds (outside pytest-benchmark)."""
        samples = sorted(self.round() for _ in range(rounds))
        return samples[len(samples) // 2]
