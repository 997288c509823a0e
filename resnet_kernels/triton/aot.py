"""Ahead-of-time compile of the conv kernel for Hopper (sm_90), with no GPU needed.

Builds the kernel's real arguments for a ResNet-50 layer with the backend's own
`kernel_args`, specialises them the way a JIT launch does (ints equal to 1
become constants; pointers and multiples of 16 get the 16-byte divisibility
hint; channels_last gives channel stride 1, a constant; TMA descriptors are
typed by dtype and block shape), compiles for sm_90 and reads what came out:
wgmma in the PTX, shared memory, and from the SASS (Triton's own cuobjdump)
the registers, the register spills, the TMA copies, the main loop's length and
the k-tile path (the main loop without the persistent kernel's epilogue branch).

Must run with TRITON_INTERPRET unset: the interpreter replaces @triton.jit
functions with Python ones that cannot be compiled.

    python -m resnet_kernels.triton.aot [--layers resnet50.conv1,...] [--dtype bfloat16] [--preactivation]

prints, for every Hopper autotune candidate and layer (the TMA and persistent
candidates where the layer allows TMA loads), what the compiler made of it: a
cheap check of a tile or kernel change before any GPU sees it. `loop` is the
SASS instruction count of the main loop, i.e. per warp per k tile (main_loop);
`k path` the same without the epilogue that the persistent kernel's flattened
loop carries behind a branch (k_tile_path; "-" for stream-K, whose k loop is
nested in its loop over tile segments); `loads` ptr, tma, pers (persistent
TMA) or sk (stream-K, pointer loads); `b32` and `b256` whether the autotuner
offers the candidate for that layer at batch 32 and 256 on an H100
(tuning._applies and _fits).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

SM90_SHARED_MEMORY = 227 * 1024


def specialise(fn, args: dict, constants: dict):
    """signature, constexprs and attrs as a JIT launch of `fn` with `args` would produce them."""
    import torch

    from triton.runtime.jit import mangle_type
    from triton.tools.tensor_descriptor import TensorDescriptor

    pointer = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.int32: "*i32"}
    divisible = [["tt.divisibility", 16]]
    signature, constexprs, attrs = {}, dict(constants), {}
    for i, (name, param) in enumerate(zip(fn.arg_names, fn.params)):
        value = args.get(name, constants.get(name))
        if isinstance(value, TensorDescriptor):
            signature[name] = mangle_type(value)  # "tensordesc<fp16[128, 64]>": dtype and block shape
        elif isinstance(value, torch.Tensor):
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


def layer_call(layer_name: str, dtype: str, preactivation: bool, batch: int = 1, channels_last: bool = True,
               device="cpu") -> tuple:
    """The op's arguments for `layer_name` (a distinct ResNet-50 layer); see conv_layer_call."""
    from ..layer_shapes import distinct_layers

    layers = {lay.name: lay for lay in distinct_layers(["resnet50"])}
    if layer_name not in layers:
        raise ValueError(f"layer must be one of {sorted(layers)}, got {layer_name!r}")
    return conv_layer_call(layers[layer_name], dtype, preactivation, batch, device, channels_last=channels_last)


def conv_layer_call(layer, dtype: str, preactivation: bool = False, batch: int = 1, device="cpu",
                    channels_last: bool = True) -> tuple:
    """The op's arguments for one ConvLayer (layer_shapes.py) as a ResNet calls it: channels_last
    (unless told otherwise), BN folded to fp32 scale/shift, the residual where the layer has one,
    and with a BN+ReLU prologue on the input for pre-activation. Values are uninitialised: for
    compiling only."""
    import torch

    dt = getattr(torch, dtype)
    cl = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(batch, layer.C, layer.H, layer.W, dtype=dt, device=device, memory_format=cl)
    w = torch.empty(layer.K, layer.C // layer.groups, layer.R, layer.S, dtype=dt, device=device)
    res = None
    if layer.has_residual:
        res = torch.empty(batch, layer.K, layer.P, layer.Q, dtype=dt, device=device, memory_format=cl)
    conv = ((layer.stride,) * 2, (layer.padding,) * 2, (1, 1), layer.groups)
    vec = lambda n: torch.ones(n, device=device)  # noqa: E731
    pre = (vec(layer.C), vec(layer.C)) if preactivation else (None, None)
    return (x, w, vec(layer.K), vec(layer.K), res, *conv, layer.relu, *pre, 1)


def cuobjdump() -> str | None:
    """The cuobjdump Triton ships with its NVIDIA backend, if this install has it."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return path if os.access(path, os.X_OK) else None


def sass_facts(cubin: bytes) -> dict:
    """From the SASS of a one-kernel cubin: registers per thread, local-memory stores (register
    spills), TMA copies (UTMALDG) in the kernel, and the main loop's instructions, cp.async
    copies (LDGSTS) and global stores (STG: the epilogue's, when the persistent kernel's tile
    loop was flattened into the k loop) per iteration (`main_loop`); all None without cuobjdump."""
    tool = cuobjdump()
    if tool is None:
        return dict.fromkeys(("registers", "local_stores", "tma_copies", "loop_instructions", "loop_cp_async",
                              "loop_stores", "k_path"))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    registers = re.search(r"REG:(\d+)", usage)
    code = instructions(sass)
    loop = main_loop(code)
    return {
        "registers": int(registers.group(1)) if registers else None,
        "local_stores": sum(1 for _, op in code if re.match(r"(@!?U?P\w+\s+)?STL\b", op)),
        "tma_copies": sum(1 for _, op in code if "UTMALDG" in op),
        "loop_instructions": len(loop),
        "loop_cp_async": sum(1 for op in loop if "LDGSTS" in op),
        "loop_stores": sum(1 for op in loop if re.match(r"(@!?U?P\w+\s+)?STG\b", op)),
        "k_path": k_tile_path(code),
    }


def instructions(sass: str) -> list:
    """(address, instruction text) of each SASS line, e.g. ``/*0130*/  @P0 BRA 0xf50 ;``."""
    return [(int(addr, 16), op) for addr, op in re.findall(r"^\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;", sass, re.M)]


def main_loop(code: list) -> list:
    """The instruction texts of the k loop: of the address ranges [target, branch] of backward
    branches that hold a wgmma (HGMMA), the shortest. Each warp runs it once per k tile. The
    mbarrier waits of a TMA pipeline retry out of line (a two-instruction spin after the
    kernel's end, not counted): this is the count when the data is already there."""
    loops = [[text for _, text in body] for body in _loops(code)]
    return min((body for body in loops if any("HGMMA" in text for text in body)), key=len, default=[])


def _branch_target(op: str):
    """The address a branch instruction jumps to, or None for any other instruction."""
    branch = re.search(r"\bBRA\s+0x([0-9a-f]+)", op)
    return int(branch.group(1), 16) if branch else None


def _loops(code: list) -> list:
    """The (address, text) bodies [target, branch] of the backward branches, in code order."""
    loops = []
    for addr, op in code:
        target = _branch_target(op)
        if target is not None and target < addr:
            loops.append([(a, text) for a, text in code if target <= a <= addr])
    return loops


def k_tile_path(code: list) -> int:
    """SASS instructions a warp runs per k tile that ends no output tile: the outermost loop that
    holds both a wgmma and the copies (UTMALDG or LDGSTS), less the longest stretch a forward
    branch inside it skips. For a one-tile kernel that is its main loop (`main_loop`, the same
    count); for the persistent kernel, whose flattened loop carries each tile's epilogue behind a
    branch taken once per output tile, it leaves the epilogue out."""
    holding = [body for body in _loops(code)
               if any("HGMMA" in t for _, t in body) and any("UTMALDG" in t or "LDGSTS" in t for _, t in body)]
    if not holding:
        return 0
    outermost = min(holding, key=lambda body: body[0][0])  # the earliest start (first of equals)
    end, skipped = outermost[-1][0], 0
    for addr, op in outermost:
        target = _branch_target(op)
        if target is not None and addr < target <= end:
            skipped = max(skipped, sum(1 for a, _ in outermost if addr < a < target))
    return len(outermost) - skipped


def _sm90(jit_fn, args: dict, constants: dict, warps: int, stages: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constexprs, attrs = specialise(jit_fn, args, constants)
    return triton.compile(
        ASTSource(jit_fn, signature, constexprs, attrs),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": warps, "num_stages": stages},
    )


def compile_layer(layer: str, dtype: str, preactivation: bool, spec: tuple, split_k: int = 1,
                  channels_last: bool = True, tma: bool = False, persistent: bool = False,
                  stream_k: bool = False) -> dict:
    """Compile the conv kernel (and with split_k > 1 its reduce kernel) for one layer and one
    (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages), a TMA candidate if `tma`, a persistent
    TMA candidate if `persistent`, a stream-K candidate if `stream_k`; returns facts about the
    result."""
    import torch

    from .conv import _EPILOGUE_ARGS, kernel_args
    from .conv_kernel import _HEURISTICS, conv_bn_act_kernel, splitk_epilogue_kernel
    from .tma import operands_allow
    from .tuning import _config, epilogue_halves

    bm, bn, bk, warps, stages = spec
    args, groups = kernel_args(*layer_call(layer, dtype, preactivation, channels_last=channels_last), None, split_k)
    args["TMA_OK"] = operands_allow(args)  # the call's tensors are on the CPU; the target is an sm_90
    # Stream-K is allowed wherever the reduction is not split (its worth, stream_k_pays, needs the
    # GPU's SM count; `b256` below asks it for an H100); its buffers typed as a launch has them.
    args["STREAM_K_OK"] = split_k == 1
    if stream_k:
        args["ws_ptr"] = torch.empty(1, dtype=torch.float32)
        args["flags_ptr"] = torch.zeros(1, dtype=torch.int32)
    values = {**args, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "TMA": int(tma or persistent),
              "PERSISTENT": int(persistent), "STREAM_K": int(stream_k)}
    # The kernel's triton.heuristics, in their order, as a launch computes them.
    for name, heuristic in _HEURISTICS.items():
        values[name] = heuristic({**values, "num_warps": warps, "num_stages": stages})
    kernel = _sm90(conv_bn_act_kernel.fn.fn, values, {}, warps, stages)  # autotune -> heuristics -> JIT
    facts = {
        "wgmma": "wgmma.mma_async" in kernel.asm["ptx"],
        "shared": kernel.metadata.shared,
        "flat_k": values["FLAT_K"] and not args["ROW_RUN"],
        "row_run": args["ROW_RUN"],
        "is_gemm": args["IS_GEMM"],
        "halves": values["EPILOGUE_HALVES"],
        "tma": values["TMA"],
        "persistent": values["PERSISTENT"],
        "stream_k": values["STREAM_K"],
        # Whether the autotuner would time this candidate for the layer at batch 32 and 256 on an
        # H100 (M scales with the batch; the compile itself is batch 1): a spill in a tile never
        # offered, e.g. a 256-wide tile for 64 output channels, costs nothing.
        **{f"offered_b{batch}": _offered(_config(spec, tma=tma, persistent=persistent, stream_k=stream_k),
                                         {**args, "M": args["M"] * batch}) for batch in (32, 256)},
        **sass_facts(kernel.asm["cubin"]),
    }
    if split_k > 1:
        channels = groups * args["K"]
        reduce_args = {n: args[n] for n in _EPILOGUE_ARGS}
        reduce_args.update(KT=channels, ws_split_stride=args["M"] * channels)
        reduce_tiles = {"BLOCK_M": 64, "BLOCK_N": 64}
        reduce_tiles["EPILOGUE_HALVES"] = epilogue_halves({**reduce_tiles, "num_warps": 4})
        reduce = _sm90(splitk_epilogue_kernel, reduce_args, reduce_tiles, 4, 1)
        facts["reduce_stores"] = "st.global" in reduce.asm["ptx"]
    return facts


H100_SMS = 132


def _offered(cfg, args: dict) -> bool:
    """Whether the autotuner offers `cfg` for the call `args` on an H100 (tuning._applies with
    an H100's SM count, and _fits)."""
    from . import tuning

    return tuning._applies(cfg, args, H100_SMS) and tuning._fits(cfg, args)


def main(argv=None) -> None:
    from ..layer_shapes import distinct_layers
    from .tuning import _HOPPER, _HOPPER_PERSISTENT, _HOPPER_STREAM_K, _HOPPER_TMA

    parser = argparse.ArgumentParser(prog="python -m resnet_kernels.triton.aot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", help="comma-separated ResNet-50 layer names (default: all distinct ones)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--preactivation", action="store_true", help="with the BN+ReLU input prologue")
    opts = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
    known = [lay.name for lay in distinct_layers(["resnet50"])]
    layers = opts.layers.split(",") if opts.layers else known
    unknown = [name for name in layers if name not in known]
    if unknown:
        parser.error(f"--layers: unknown {', '.join(unknown)}; the distinct ResNet-50 layers are {', '.join(known)}")
    candidates = ([(spec, {}) for spec in _HOPPER] + [(spec, {"tma": True}) for spec in _HOPPER_TMA]
                  + [(spec, {"persistent": True}) for spec in _HOPPER_PERSISTENT]
                  + [(spec, {"stream_k": True}) for spec in _HOPPER_STREAM_K])
    print(f"{'layer':32} {'BMxBNxBK/warps/stages':22} {'smem KB':>7} {'regs':>4} {'spills':>6} halves wgmma "
          f"{'loads':5} {'loop':>4} {'k path':>6} b32 b256")
    for layer in layers:
        for spec, kind in candidates:
            try:
                f = compile_layer(layer, opts.dtype, opts.preactivation, spec, **kind)
            except Exception as err:  # a compile failure is a finding, not the end of the audit
                print(f"{layer:32} {str(spec):22} failed: {str(err).splitlines()[0][:80]}")
                continue
            if kind and not f["tma"] and not f["stream_k"]:
                continue  # the layer does not allow TMA loads: this candidate is never offered for it
            tile = "{}x{}x{}/{}/{}".format(*spec)
            loads = "pers" if f["persistent"] else "tma" if f["tma"] else "sk" if f["stream_k"] else "ptr"
            k_path = "-" if f["stream_k"] else f["k_path"]  # its outermost loop is the segment loop: no k path
            print(f"{layer:32} {tile:22} {f['shared'] / 1024:7.0f} {f['registers']!s:>4} {f['local_stores']!s:>6} "
                  f"{f['halves']!s:6} {f['wgmma']!s:5} {loads:5} {f['loop_instructions']!s:>4} {k_path!s:>6} "
                  f"{'yes' if f['offered_b32'] else 'no':3} {'yes' if f['offered_b256'] else 'no'}")


if __name__ == "__main__":
    main()
