"""Ahead-of-time compile of the conv kernel for Hopper (sm_90), with no GPU.

The interpreter (TRITON_INTERPRET=1, set by conftest.py) replaces @triton.jit
functions with Python ones that cannot be compiled, so the compiling runs in a
subprocess that executes this file as a script with TRITON_INTERPRET unset.
The script builds the kernel's real arguments for a few ResNet-50 layers with
the backend's own `kernel_args`, specialises them the way a launch does (ints
equal to 1 become constants, pointers and multiples of 16 get the 16-byte
divisibility hint; channels_last gives channel stride 1), compiles them for
sm_90 and reports what the PTX uses.
"""

import json
import os
import subprocess
import sys

import pytest

# name: (ResNet-50 layer, dtype, pre-activation prologue, (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages),
#        split_k)
CONFIGS = {
    "3x3_fp16_128x128x64": ("resnet50.layer3.0.conv2", "float16", False, (128, 128, 64, 8, 3), 1),
    "1x1_gemm_residual_fp16": ("resnet50.layer1.0.conv3", "float16", False, (128, 256, 64, 8, 3), 1),
    "3x3_s2_bf16_preactivation": ("resnet50.layer2.0.conv2", "bfloat16", True, (128, 128, 32, 4, 4), 1),
    "stem_7x7_c3_fp16": ("resnet50.conv1", "float16", False, (128, 64, 32, 4, 4), 1),
    "3x3_late_split16_fp16": ("resnet50.layer4.1.conv2", "float16", False, (64, 64, 64, 4, 3), 16),
}
SM90_SHARED_MEMORY = 227 * 1024


def _specialise(fn, args, constants):
    """signature, constexprs and attrs as a JIT launch of `fn` with `args` would produce them."""
    import torch

    pointer = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32"}
    divisible = [["tt.divisibility", 16]]
    signature, constexprs, attrs = {}, dict(constants), {}
    for i, (name, param) in enumerate(zip(fn.arg_names, fn.params)):
        value = args.get(name, constants.get(name))
        if isinstance(value, torch.Tensor):
            signature[name] = pointer[value.dtype]
            if value.data_ptr() % 16 == 0:
                attrs[(i,)] = divisible
        elif param.is_constexpr or value == 1:
            signature[name], constexprs[name] = "constexpr", value
        else:
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            if value % 16 == 0:
                attrs[(i,)] = divisible
    return signature, constexprs, attrs


def _layer_call(layer_name, dtype, preactivation):
    """The op's arguments for `layer_name` at batch 1, channels_last, BN folded, as a ResNet calls it
    (with a BN+ReLU prologue on the input for pre-activation)."""
    import torch

    from resnet_kernels.layer_shapes import distinct_layers

    layer = next(lay for lay in distinct_layers(["resnet50"]) if lay.name == layer_name)
    dt = getattr(torch, dtype)
    x = torch.randn(1, layer.C, layer.H, layer.W, dtype=dt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(layer.K, layer.C // layer.groups, layer.R, layer.S, dtype=dt)
    res = torch.randn(1, layer.K, layer.P, layer.Q, dtype=dt) if layer.has_residual else None
    if res is not None:
        res = res.contiguous(memory_format=torch.channels_last)
    conv = ((layer.stride,) * 2, (layer.padding,) * 2, (1, 1), layer.groups)
    pre = (torch.ones(layer.C), torch.zeros(layer.C)) if preactivation else (None, None)
    return (x, w, torch.ones(layer.K), torch.zeros(layer.K), res, *conv, layer.relu, *pre, 1)


def compile_all():
    """Compile every entry of CONFIGS for sm_90; returns {name: facts about the result}."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from resnet_kernels.triton.conv import _EPILOGUE_ARGS, kernel_args
    from resnet_kernels.triton.conv_kernel import conv_bn_act_kernel, splitk_epilogue_kernel
    from resnet_kernels.triton.tuning import flat_k

    def sm90(jit_fn, args, constants, warps, stages):
        signature, constexprs, attrs = _specialise(jit_fn, args, constants)
        return triton.compile(
            ASTSource(jit_fn, signature, constexprs, attrs),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": warps, "num_stages": stages},
        )

    jit_fn = conv_bn_act_kernel.fn.fn  # autotune -> heuristics -> the JITFunction
    results = {}
    for name, (layer, dtype, preactivation, (bm, bn, bk, warps, stages), split_k) in CONFIGS.items():
        args, groups = kernel_args(*_layer_call(layer, dtype, preactivation), None, split_k)
        tiles = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}
        tiles["FLAT_K"] = flat_k({**args, **tiles})
        tiles["SPLIT"] = split_k > 1
        kernel = sm90(jit_fn, args, tiles, warps, stages)
        results[name] = {
            "wgmma": "wgmma.mma_async" in kernel.asm["ptx"],
            "shared": kernel.metadata.shared,
            "flat_k": tiles["FLAT_K"],
            "is_gemm": args["IS_GEMM"],
        }
        if split_k > 1:
            channels = groups * args["K"]
            reduce_args = {n: args[n] for n in _EPILOGUE_ARGS}
            reduce_args.update(KT=channels, ws_split_stride=args["M"] * channels)
            reduce = sm90(splitk_epilogue_kernel, reduce_args, {"BLOCK_M": 64, "BLOCK_N": 64}, 4, 1)
            results[name]["reduce_stores"] = "st.global" in reduce.asm["ptx"]
    return results


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


def test_split_k_compiles_with_its_reduction_kernel(compiled):
    assert compiled["3x3_late_split16_fp16"]["reduce_stores"]


def test_the_configs_cover_the_special_paths(compiled):
    assert compiled["1x1_gemm_residual_fp16"]["is_gemm"]
    assert compiled["stem_7x7_c3_fp16"]["flat_k"]
    assert not compiled["3x3_fp16_128x128x64"]["flat_k"] and not compiled["3x3_fp16_128x128x64"]["is_gemm"]


if __name__ == "__main__":
    print(json.dumps(compile_all()))
