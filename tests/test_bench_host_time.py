"""`python -m resnet_kernels.bench host-time`: the host time per op call and per eager forward.

On the CPU only its --stub mode runs (the triton backend under the interpreter, launches
replaced by no-ops); the GPU mode is the same code with real launches and a device clock.
"""

from __future__ import annotations

import os

import pytest
from conftest import needs_cuda

from resnet_kernels.bench import host_time


def stub_launches(monkeypatch):
    """host_time.stub_triton_launches, undone after the test (run() then finds it done)."""
    host_time.stub_triton_launches(monkeypatch.setattr)
    monkeypatch.setattr(host_time, "stub_triton_launches", lambda: None)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                    reason="the stub mode runs the triton backend under the interpreter (TRITON_INTERPRET=1), "
                           "which a GPU test run does not set")
def test_stub_mode_times_every_layer_and_the_forward(monkeypatch, capsys):
    stub_launches(monkeypatch)
    rows = host_time.run(["triton"], stub=True, calls=2, rounds=1)
    assert [r[0] for r in rows[:-1]] == list(host_time.LAYERS)
    assert rows[-1][0].startswith("resnet50 forward")
    assert all(backend == "triton" and host > 0 and dev is None for _, backend, host, dev in rows)
    # A forward is 53 op calls and more: it cannot take less host time than one call.
    assert rows[-1][2] > max(r[2] for r in rows[:-1])
    assert "host time per call, stubbed launches" in capsys.readouterr().out


@pytest.mark.parametrize("env, backends, message", [
    ("0", ["triton"], "needs TRITON_INTERPRET=1"),
    ("1", ["cuda"], "triton backend only"),
])
def test_stub_mode_refuses_what_it_cannot_time(monkeypatch, env, backends, message):
    monkeypatch.setenv("TRITON_INTERPRET", env)
    with pytest.raises(SystemExit, match=message):
        host_time.run(backends, stub=True, calls=1, rounds=1)


@needs_cuda
def test_gpu_mode_times_host_and_device(monkeypatch):
    """Real launches (untuned: one config per shape, as the session's host stage runs it)."""
    monkeypatch.setenv("RESNET_KERNELS_TRITON_AUTOTUNE", "0")
    rows = host_time.run(["triton"], stub=False, calls=3, rounds=1)
    assert len(rows) == len(host_time.LAYERS) + 1
    assert all(host > 0 and dev is not None and dev > 0 for _, _, host, dev in rows)


def test_without_a_gpu_the_real_mode_says_to_stub(monkeypatch):
    monkeypatch.setattr(host_time.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--stub"):
        host_time.run(["triton"], stub=False)
