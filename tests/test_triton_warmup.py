"""The parallel compile warm-up (resnet_kernels/triton/warmup.py), on the CPU.

Compiling needs a GPU, but the path from `warm_layer` through Triton's own
autotuner and heuristics wrappers down to the kernel's `run(warmup=True)` is
the same under the interpreter, where a warm-up compiles nothing: these tests
record what reaches that last step.
"""

import pytest
import torch

from resnet_kernels.layer_shapes import model_layers
from resnet_kernels.triton import tuning, warmup
from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel, splitk_epilogue_kernel


def _record(monkeypatch, fn):
    calls = []
    run = fn.run

    def recording_run(*args, **kwargs):
        calls.append(kwargs)
        return run(*args, **kwargs)

    monkeypatch.setattr(fn, "run", recording_run)
    return calls


def test_shapes_are_distinct_across_models_batches_and_dtypes():
    one = warmup.shapes(["resnet50"], [256], ["fp16"])
    assert len(one) == len({layer[1:] for layer in model_layers("resnet50")}) < len(model_layers("resnet50"))
    # ResNet-101 adds layer3 blocks of shapes ResNet-50 already has.
    assert len(warmup.shapes(["resnet50", "resnet101"], [256], ["fp16"])) == len(one)
    assert len(warmup.shapes(["resnet50"], [1, 256], ["fp16", "bf16"])) == 4 * len(one)


def test_warm_layer_reaches_the_kernel_as_a_warmup_with_the_launch_arguments(monkeypatch):
    calls = _record(monkeypatch, conv_bn_act_kernel.fn.fn)  # autotune -> heuristics -> kernel
    layer = next(lay for lay in model_layers("resnet50") if lay.name == "layer1.0.conv3")
    assert warmup.warm_layer(layer, 2, "fp16", device="cpu") == len(tuning.autotune_configs())
    (kwargs,) = calls
    assert kwargs["warmup"] is True
    assert kwargs["x_ptr"].dtype == torch.float16 and kwargs["x_ptr"].is_contiguous(memory_format=torch.channels_last)
    # the heuristics' constexprs are filled in as for a launch
    assert kwargs["HAS_RES"] and kwargs["RES_DENSE"] and kwargs["OUT_DENSE"] and kwargs["IS_GEMM"]
    assert {"FLAT_K", "SPLIT", "EPILOGUE_HALVES", "BLOCK_M"} <= set(kwargs)


def test_a_split_call_also_warms_its_reduce_kernel(monkeypatch):
    monkeypatch.setattr(tuning, "num_sms", lambda device: 132)  # an H100's SMs: batch 1 on 7x7 splits
    conv_calls = _record(monkeypatch, conv_bn_act_kernel.fn.fn)
    reduce_calls = _record(monkeypatch, splitk_epilogue_kernel)
    layer = next(lay for lay in model_layers("resnet50") if lay.name == "layer4.1.conv2")
    assert warmup.warm_layer(layer, 1, "bf16", device="cpu") == len(tuning.autotune_configs()) + 1
    assert conv_calls[0]["SPLIT_K"] > 1 and conv_calls[0]["SPLIT"]
    assert reduce_calls[0]["warmup"] is True and reduce_calls[0]["SPLIT_K"] == conv_calls[0]["SPLIT_K"]


def test_failures_are_reported_not_raised(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of resources: shared memory")

    monkeypatch.setattr(warmup, "warm_layer", broken)
    items = warmup.shapes(["resnet18"], [1], ["fp16"])[:2]
    compiled, failures = warmup.warm(items, jobs=1)
    assert compiled == 0 and len(failures) == 2
    assert "RuntimeError: out of resources" in failures[0]


def test_no_layer_call_starts_after_the_budget():
    compiled, failures = warmup.warm(warmup.shapes(["resnet18"], [1], ["fp16"])[:2], jobs=1, budget_s=-1)
    assert compiled == 0 and len(failures) == 2 and "out of time" in failures[0]


def test_the_command_names_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        warmup.main(["--models", "resnet51"])
    assert "--models must be among" in capsys.readouterr().err


def test_the_command_refuses_to_run_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        warmup.main(["--models", "resnet18"])
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_the_command_names_a_bad_dtype(capsys):
    with pytest.raises(SystemExit):
        warmup.main(["--dtypes", "fp8"])
    assert "--dtypes must be among" in capsys.readouterr().err
