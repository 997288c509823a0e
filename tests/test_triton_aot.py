"""Ahead-of-time compile of the conv kernel for Hopper (sm_90), with no GPU.

The interpreter (TRITON_INTERPRET=1, set by conftest.py) replaces @triton.jit
functions with Python ones that cannot be compiled, so the compiling
(resnet_kernels/triton/aot.py) runs in a subprocess that executes this file as
a script with TRITON_INTERPRET unset, for a few ResNet-50 layers and autotune
candidates, and reports what the PTX and SASS contain.
"""

import json
import os
import subprocess
import sys

import pytest

from resnet_kernels.triton.aot import SM90_SHARED_MEMORY

# name: (ResNet-50 layer, dtype, pre-activation prologue, (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages),
#        split_k[, channels_last (default True)[, TMA candidate (default False)[, persistent (default False)
#        [, stream-K (default False)]]]])
CONFIGS = {
    "3x3_fp16_128x128x64": ("resnet50.layer3.0.conv2", "float16", False, (128, 128, 64, 8, 3), 1),
    "1x1_gemm_residual_fp16": ("resnet50.layer1.0.conv3", "float16", False, (128, 256, 64, 8, 3), 1),
    "3x3_s2_bf16_preactivation": ("resnet50.layer2.0.conv2", "bfloat16", True, (128, 128, 32, 4, 4), 1),
    "stem_7x7_c3_fp16": ("resnet50.conv1", "float16", False, (64, 64, 64, 4, 3), 1),
    "3x3_late_split16_fp16": ("resnet50.layer4.1.conv2", "float16", False, (64, 64, 64, 4, 3), 16),
    "stem_nchw_flat_fp16": ("resnet50.conv1", "float16", False, (64, 64, 32, 4, 4), 1, False),
    # TMA candidates (tma.py); the first is the TMA twin of 1x1_gemm_residual_fp16.
    "1x1_tma_residual_fp16": ("resnet50.layer1.0.conv3", "float16", False, (128, 256, 64, 8, 3), 1, True, True),
    "1x1_tma_bf16_4warps": ("resnet50.layer4.1.conv1", "bfloat16", False, (128, 128, 64, 4, 4), 1, True, True),
    "1x1_tma_split4_fp16": ("resnet50.layer4.1.conv1", "float16", False, (64, 128, 64, 4, 4), 4, True, True),
    # Persistent TMA candidates (the PERSISTENT schedule of conv_bn_act_kernel).
    "1x1_persistent_residual_fp16": ("resnet50.layer1.0.conv3", "float16", False, (128, 128, 64, 8, 4), 1, True,
                                     True, True),
    "1x1_persistent_two_per_sm_bf16": ("resnet50.layer4.0.conv3", "bfloat16", False, (128, 64, 64, 4, 3), 1, True,
                                       True, True),
    # Stream-K candidates (the STREAM_K schedule), pointer loads.
    "3x3_stream_k_fp16": ("resnet50.layer4.1.conv2", "float16", False, (128, 128, 64, 8, 3), 1, True, False, False,
                          True),
    "1x1_stream_k_two_per_sm_bf16": ("resnet50.layer4.0.conv3", "bfloat16", False, (128, 64, 64, 4, 4), 1, True,
                                     False, False, True),
}
TMA_CONFIGS = [name for name, spec in CONFIGS.items() if spec[6:7] == (True,)]
PERSISTENT_CONFIGS = [name for name, spec in CONFIGS.items() if spec[7:8] == (True,)]
STREAM_K_CONFIGS = [name for name, spec in CONFIGS.items() if spec[8:9] == (True,)]
H100_SHARED_MEMORY_PER_SM = 228 * 1024  # of which each resident block also takes 1 KB


def compile_all():
    """Compile every entry of CONFIGS for sm_90; returns {name: facts about the result}."""
    from resnet_kernels.triton.aot import compile_layer

    return {name: compile_layer(*spec) for name, spec in CONFIGS.items()}


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compiles_for_sm90_with_wgmma(name, compiled):
    result = compiled[name]
    assert result["wgmma"], "no Hopper tensor-core instruction (wgmma) in the PTX"
    assert 0 < result["shared"] <= SM90_SHARED_MEMORY


@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_register_spills(name, compiled):
    """The tiles the autotuner offers compile without spilling (the epilogue of the 128-register
    accumulators runs in column halves for this; see tuning.epilogue_halves)."""
    stores = compiled[name]["local_stores"]
    if stores is None:
        pytest.skip("Triton's cuobjdump is not installed with this triton, so the SASS cannot be read")
    assert stores == 0, f"{stores} local-memory stores (register spills) in the SASS"


def test_split_k_compiles_with_its_reduction_kernel(compiled):
    assert compiled["3x3_late_split16_fp16"]["reduce_stores"]


def test_the_configs_cover_the_special_paths(compiled):
    assert compiled["1x1_gemm_residual_fp16"]["is_gemm"] and not compiled["1x1_gemm_residual_fp16"]["tma"]
    assert compiled["1x1_gemm_residual_fp16"]["halves"] and not compiled["3x3_fp16_128x128x64"]["halves"]
    assert compiled["stem_7x7_c3_fp16"]["row_run"] and not compiled["stem_7x7_c3_fp16"]["flat_k"]
    assert compiled["stem_nchw_flat_fp16"]["flat_k"] and not compiled["stem_nchw_flat_fp16"]["row_run"]
    assert not compiled["3x3_fp16_128x128x64"]["flat_k"] and not compiled["3x3_fp16_128x128x64"]["is_gemm"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_tma_candidates_copy_with_tma_and_the_others_with_cp_async(name, compiled):
    """TMA candidates take the TMA walk, whose SASS copies with UTMALDG and has no cp.async
    (LDGSTS) left in the main loop; pointer candidates have no TMA copy."""
    result = compiled[name]
    assert result["tma"] == (name in TMA_CONFIGS)
    if result["tma_copies"] is None:
        pytest.skip("Triton's cuobjdump is not installed with this triton, so the SASS cannot be read")
    assert result["loop_instructions"] > 0, "no main loop with a wgmma found in the SASS"
    if result["tma"]:
        assert result["tma_copies"] > 0 and result["loop_cp_async"] == 0
    else:
        assert result["tma_copies"] == 0


def test_tma_shortens_the_main_loop(compiled):
    """Per warp and k tile, the TMA loop of the 128x256 1x1 tile is shorter than its pointer twin's
    (86-87 against 124-133 SASS instructions with triton 3.6-3.8, see benchmarks/NOTES.md)."""
    tma, pointer = compiled["1x1_tma_residual_fp16"], compiled["1x1_gemm_residual_fp16"]
    if tma["loop_instructions"] is None:
        pytest.skip("Triton's cuobjdump is not installed with this triton, so the SASS cannot be read")
    assert pointer["loop_cp_async"] > 0
    assert tma["loop_instructions"] < 0.8 * pointer["loop_instructions"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_persistent_candidates_run_the_epilogue_inside_the_pipelined_loop(name, compiled):
    """A persistent candidate takes the persistent kernel and its tile loop is flattened into the k
    loop (`flatten=True`): the epilogue's global stores sit inside the main loop, between one
    tile's wgmmas and the next's, so the next tile's copies are already in flight. A one-tile
    kernel stores after its loop."""
    result = compiled[name]
    assert result["persistent"] == (name in PERSISTENT_CONFIGS)
    if result["loop_stores"] is None:
        pytest.skip("Triton's cuobjdump is not installed with this triton, so the SASS cannot be read")
    if result["persistent"]:
        assert result["tma_copies"] > 0 and result["loop_stores"] > 0
        # ... behind a branch: a k tile that ends no output tile runs a short path (~140 SASS
        # instructions per warp with triton 3.6-3.8 against a loop of 600-1,600 with the epilogue)
        assert 0 < result["k_path"] < 0.3 * result["loop_instructions"]
    else:
        assert result["loop_stores"] == 0
        if name not in STREAM_K_CONFIGS:  # stream-K's outermost loop is its segment loop (test below)
            # no epilogue in the loop to skip (at most a short branch of its own: 7 of 475
            # instructions in the pre-activation 3x3 with triton 3.6)
            assert 0.9 * result["loop_instructions"] <= result["k_path"] <= result["loop_instructions"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stream_k_candidates_keep_a_pipelined_k_loop(name, compiled):
    """A stream-K candidate takes the stream-K schedule, and its k loop, nested in the loop over
    the program's tile segments, is still software-pipelined: cp.async copies (LDGSTS) and the
    wgmma in one loop with no global store. Its length: 195-201 SASS instructions per warp and
    k tile against 170-176 for the one-tile twin, triton 3.6-3.8 (benchmarks/NOTES.md)."""
    result = compiled[name]
    assert result["stream_k"] == (name in STREAM_K_CONFIGS)
    if not result["stream_k"]:
        return
    if result["loop_instructions"] is None:
        pytest.skip("Triton's cuobjdump is not installed with this triton, so the SASS cannot be read")
    assert result["loop_cp_async"] > 0 and result["loop_stores"] == 0 and result["tma_copies"] == 0


def test_two_128x64_programs_fit_an_sm(compiled):
    """tuning.persistent_programs and stream_k_programs launch two 128x64 programs per SM: their
    shared memory (plus 1 KB each reserved by the hardware) and registers must fit an H100 SM, or
    the second wave of programs would wait for the first to finish all its work (and a stream-K
    program waiting for a partial of one not yet started would wait that long too)."""
    for name in ("1x1_persistent_two_per_sm_bf16", "1x1_stream_k_two_per_sm_bf16"):  # also stream_k_programs'
        result = compiled[name]
        assert 2 * (result["shared"] + 1024) <= H100_SHARED_MEMORY_PER_SM
        if result["registers"] is not None:
            assert 2 * 128 * result["registers"] <= 65536


if __name__ == "__main__":
    print(json.dumps(compile_all()))


def test_an_unknown_layer_name_is_refused_before_compiling(monkeypatch, capsys):
    """`--layers layer1.0.conv3` (without the model's prefix) names the valid layers, once, instead
    of one failure line per candidate."""
    from resnet_kernels.triton import aot

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(aot, "compile_layer", lambda *a, **k: pytest.fail("compiled an unknown layer"))
    with pytest.raises(SystemExit) as exit_info:
        aot.main(["--layers", "resnet50.layer1.0.conv3,layer1.0.conv3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--layers: unknown layer1.0.conv3;" in err and "resnet50.layer1.0.conv3" in err
