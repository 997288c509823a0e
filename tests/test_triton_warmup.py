"""The parallel compile warm-up (resnet_kernels/triton/warmup.py), on the CPU.

Compiling needs a GPU, but the path from `warm_layer` through Triton's own
autotuner and heuristics wrappers down to the kernel's `run(warmup=True)` is
the same under the interpreter, where a warm-up compiles nothing: these tests
record what reaches that last step.
"""

import pytest
import torch
from triton.tools.tensor_descriptor import TensorDescriptor
from helpers import default_triton_switches, record_runs

from resnet_kernels.layer_shapes import model_layers
from resnet_kernels.triton import tma, tuning, warmup
from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel, splitk_epilogue_kernel


def test_shapes_are_distinct_across_models_batches_and_dtypes():
    one = warmup.shapes(["resnet50"], [256], ["fp16"])
    assert len(one) == len({layer[1:] for layer in model_layers("resnet50")}) < len(model_layers("resnet50"))
    # ResNet-101 adds layer3 blocks of shapes ResNet-50 already has.
    assert len(warmup.shapes(["resnet50", "resnet101"], [256], ["fp16"])) == len(one)
    assert len(warmup.shapes(["resnet50"], [1, 256], ["fp16", "bf16"])) == 4 * len(one)


def test_warm_layer_reaches_the_kernel_as_a_warmup_with_the_launch_arguments(monkeypatch):
    calls = record_runs(monkeypatch, conv_bn_act_kernel.fn.fn)  # autotune -> heuristics -> kernel
    layer = next(lay for lay in model_layers("resnet50") if lay.name == "layer1.0.conv3")
    assert warmup.warm_layer(layer, 2, "fp16", device="cpu") == len(tuning.autotune_configs())
    (kwargs,) = calls
    assert kwargs["warmup"] is True
    assert kwargs["x_ptr"].dtype == torch.float16 and kwargs["x_ptr"].is_contiguous(memory_format=torch.channels_last)
    # the heuristics' constexprs are filled in as for a launch
    assert kwargs["HAS_RES"] and kwargs["RES_DENSE"] and kwargs["OUT_DENSE"] and kwargs["IS_GEMM"]
    assert {"FLAT_K", "SPLIT", "EPILOGUE_HALVES", "BLOCK_M"} <= set(kwargs)


@pytest.fixture
def hopper_candidates(monkeypatch):
    """The GPU's candidate list (pointer and TMA tiles) and its pruning, on a CPU that passes for
    a GPU (no disk cache: nothing is looked up), with the switches at their defaults."""
    default_triton_switches(monkeypatch)
    monkeypatch.setattr(tuning, "interpreting", lambda: False)
    monkeypatch.setattr(tuning, "disk_cache", lambda _device: {})
    monkeypatch.setattr(conv_bn_act_kernel, "configs", tuning.autotune_configs())


@pytest.mark.parametrize(
    "name,tma_candidates,persistent_candidates",
    [("layer1.0.conv3", 5, 3), ("layer4.1.conv1", 5, 3), ("layer1.0.conv1", 1, 1), ("layer1.0.conv2", 0, 0),
     ("layer2.0.downsample.0", 0, 0)],
)
def test_warm_up_adds_the_tma_candidates_only_where_they_apply(name, tma_candidates, persistent_candidates,
                                                               hopper_candidates, monkeypatch):
    """On an sm_90, 1x1 stride-1 layers also compile the TMA and persistent TMA candidates that fit
    them (K = 64 fits one of each: BLOCK_N = 64), each with descriptors of its own tile; 3x3 and
    strided 1x1 layers compile what they compile on a GPU without TMA."""
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    monkeypatch.setattr(tma, "device_has_tma", lambda device: False)
    without = warmup.warm_layer(layer, 256, "fp16", device="cpu")
    monkeypatch.setattr(tma, "device_has_tma", lambda device: True)
    calls = record_runs(monkeypatch, conv_bn_act_kernel.fn.fn)
    assert warmup.warm_layer(layer, 256, "fp16", device="cpu") == without + tma_candidates + persistent_candidates
    tma_calls = [kw for kw in calls if kw["TMA"]]
    assert len(tma_calls) == tma_candidates + persistent_candidates
    assert sum(kw["PERSISTENT"] for kw in calls) == persistent_candidates
    for kw in tma_calls:
        assert kw["warmup"] is True
        assert list(kw["a_desc"].block_shape) == [kw["BLOCK_M"], kw["BLOCK_K"]]
        assert list(kw["b_desc"].block_shape) == [kw["BLOCK_K"], kw["BLOCK_N"]]


def _specialisation(kwargs: dict) -> dict:
    """What a JIT cache key is made of, per argument: the type of tensors and descriptors (dtype,
    block shape; Triton's own mangling), alignment of pointers, the value of everything else."""
    from triton.runtime.jit import mangle_type

    out = {}
    for name, value in kwargs.items():
        if isinstance(value, (torch.Tensor, TensorDescriptor)):
            out[name] = (mangle_type(value), isinstance(value, TensorDescriptor) or value.data_ptr() % 16 == 0)
        elif name not in ("warmup", "grid"):
            out[name] = value
    return out


def test_warm_up_and_launch_reach_the_same_specialisation(monkeypatch):
    """A warm-up and a launch of the same call and (TMA) config hand the JIT the same argument
    types, descriptors included, so the launch finds the warm-up's kernel in the cache."""
    from resnet_kernels.layer_shapes import ConvLayer
    from resnet_kernels.triton.aot import conv_layer_call
    from resnet_kernels.triton.conv import conv_bn_act

    default_triton_switches(monkeypatch)
    monkeypatch.setattr(conv_bn_act_kernel, "configs", [tuning._config((32, 32, 16, 4, 1), tma=True)])
    monkeypatch.setattr(tuning, "remember", lambda *args: None)
    calls = record_runs(monkeypatch, conv_bn_act_kernel.fn.fn)
    layer = ConvLayer("small1x1", 32, 48, 5, 5, 1, 1, 1, 0, 1, True, True)
    warmup.warm_layer(layer, 2, "fp16", device="cpu")
    call = conv_layer_call(layer, "float16", batch=2)
    conv_bn_act(*[torch.randn_like(a) if isinstance(a, torch.Tensor) else a for a in call])
    warm, launch = calls
    assert warm["TMA"] and launch["TMA"]
    assert _specialisation(warm) == _specialisation(launch)


def test_a_split_call_also_warms_its_reduce_kernel(monkeypatch):
    monkeypatch.setattr(tuning, "num_sms", lambda device: 132)  # an H100's SMs: batch 1 on 7x7 splits
    conv_calls = record_runs(monkeypatch, conv_bn_act_kernel.fn.fn)
    reduce_calls = record_runs(monkeypatch, splitk_epilogue_kernel)
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
