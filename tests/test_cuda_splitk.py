"""Split-K in the CUDA backend's mma.sync kernel (GPU only).

With split S > 1 the implicit GEMM's grid gets S CTAs per output tile, each
reducing a contiguous range of k tiles into an fp32 workspace the op allocates;
a second kernel sums the partials in a fixed order and runs the fused epilogue
(csrc/kernels/conv_plan.cu, implicit_gemm.cuh, splitk_reduce.cu).

RESNET_KERNELS_CUDA_SPLIT_K=<n> forces S = min(n, k tiles) on any shape, so
uneven ranges (k tiles not a multiple of S), S > k tiles (clamped), every
epilogue feature and both reduce paths (16-byte stores when 8 | K, 4-byte
otherwise) are exercised on small shapes; the heuristic is checked on the late
ResNet-50 layers at batch 1 through torch.ops.resnet_kernels.conv_plan_cuda
(resnet_kernels.cuda_ops.conv_plan), which reports the plan the op uses.

Unwritten outputs and workspace garbage: both the output block and the
workspace block are NaN-filled and freed to an emptied caching allocator right
before the call, so the op's two allocations reuse them (checked by address
for y, and for the workspace by finding the block overwritten afterwards).
"""

import math

import pytest
import torch
from conftest import needs_cuda, needs_extension
from helpers import REL_TOL, assert_within_cudnn_error, oracle, rel_error
from helpers import cuda_randn as _randn
from helpers import cuda_vector as _vector
from helpers import cuda_weight as _weight

from resnet_kernels import cuda_ops
from resnet_kernels.layer_shapes import model_layers

pytestmark = [needs_cuda, needs_extension]

ENV = "RESNET_KERNELS_CUDA_SPLIT_K"
DTYPES = [torch.float16, torch.bfloat16]
CL = torch.channels_last
SPLITS = [2, 3, 7]


def _op(*args):
    return torch.ops.resnet_kernels.conv_bn_act_cuda(*args)

# name: (N, C, H, W, K, R, S, stride, padding, dilation, groups), k tiles = ceil(R*S*C/groups / 32)
SHAPES = {
    "1x1_c352": ((2, 352, 7, 7, 64, 1, 1, 1, 0, 1, 1), 11),  # 11 tiles: uneven for 2, 3 and 7; M = 98
    "3x3_c24_k40": ((1, 24, 9, 9, 40, 3, 3, 1, 1, 1, 1), 7),  # gemm_k 216: last tile partial; Kg tail
    "3x3_s2_k36": ((2, 32, 10, 10, 36, 3, 3, 2, 1, 1, 1), 9),  # 8 does not divide K: 4-byte reduce
    "groups2": ((2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 2), 9),  # 2 groups of 32 channels
    "1x1_c64": ((2, 64, 6, 6, 64, 1, 1, 1, 0, 1, 1), 2),  # 2 tiles: S = 3 and 7 are clamped to 2
}


@pytest.fixture(autouse=True)
def _default_kernel_choice(monkeypatch):
    """The heuristic and the mma.sync kernel unless a test forces a split."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("RESNET_KERNELS_CUDA_KERNEL", raising=False)


def _case(name, dtype, gen, batch=None):
    (n, c, h, w, k, r, s, stride, padding, dilation, groups), _ = SHAPES[name]
    n = batch or n
    x = _randn(gen, n, c, h, w, dtype=dtype)
    wt = _weight(gen, k, c // groups, r, s, dtype)
    p = (h + 2 * padding - dilation * (r - 1) - 1) // stride + 1
    q = (w + 2 * padding - dilation * (s - 1) - 1) // stride + 1
    return x, wt, ([stride] * 2, [padding] * 2, [dilation] * 2, groups), (n, k, p, q)


def run_poisoned(args, out_shape):
    """Run the op with its output and its split-K workspace landing in NaN-filled memory.

    Returns (y, plan). Allocation order in the op: y, then the workspace; the
    poison blocks are allocated (and freed) in the same order and sizes, so
    the caching allocator hands them back block for block."""
    plan = cuda_ops.conv_plan(*args)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    nan = float("nan")
    y_poison = torch.full((math.prod(out_shape),), nan, dtype=args[0].dtype, device="cuda")
    ws_floats = plan.workspace_bytes // 4
    ws_poison = torch.full((ws_floats,), nan, device="cuda") if ws_floats else None
    y_address = y_poison.data_ptr()
    ws_address = ws_poison.data_ptr() if ws_floats else None
    del y_poison, ws_poison
    y = _op(*args)
    assert y.data_ptr() == y_address, "the output did not reuse the poisoned block; the NaN check would be vacuous"
    torch.cuda.synchronize()
    assert not torch.isnan(y).any(), "NaN in the output: unwritten elements or workspace garbage read"
    if ws_floats:
        # The workspace was released when the op returned; the same request gets the same block back.
        after = torch.empty(ws_floats, device="cuda")
        assert after.data_ptr() == ws_address, "the workspace did not reuse the poisoned block"
        assert torch.isfinite(after).all(), "the split GEMM left part of the workspace unwritten"
    return y, plan


def check(args, out_shape, split=None, k_tiles=None):
    y, plan = run_poisoned(args, out_shape)
    if split is not None:
        assert plan.kernel == "mma"
        assert plan.split == min(split, k_tiles), plan
        n, k, p, q = out_shape
        assert plan.workspace_bytes == (plan.split * n * p * q * k * 4 if plan.split > 1 else 0)
    err = rel_error(y, oracle(*args))
    assert err <= REL_TOL[args[0].dtype], f"relative error {err:.3g} > {REL_TOL[args[0].dtype]:.3g} ({plan})"
    return y, plan


# --- forced splits -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_forced_split_with_residual(name, split, dtype, gen, monkeypatch):
    monkeypatch.setenv(ENV, str(split))
    x, w, conv, out = _case(name, dtype, gen)
    sc, sh = _vector(gen, out[1], positive=True), _vector(gen, out[1])
    res = _randn(gen, *out, dtype=dtype)  # NHWC: the reduce's 16-byte residual loads where 8 | K
    _, plan = check((x, w, sc, sh, res, *conv, True, None, None, 1), out, split, SHAPES[name][1])
    # The reduce stores 16 bytes where 8 | K; a dense NHWC residual then also loads 16 bytes.
    assert plan.vector_output == plan.vector_residual == (out[1] % 8 == 0), plan


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    "res_channels,residual_stride,res_format",
    [(32, 2, CL), (16, 2, torch.contiguous_format), (5, 3, torch.contiguous_format), (64, 1, torch.contiguous_format)],
)
def test_forced_split_option_a_residual(res_channels, residual_stride, res_format, split, dtype, gen, monkeypatch):
    monkeypatch.setenv(ENV, str(split))
    x, w, conv, out = _case("1x1_c352", dtype, gen)
    n, _, p, q = out
    size = p * residual_stride - (residual_stride - 1)  # ceil(size / residual_stride) == p
    res = _randn(gen, n, res_channels, size, size, dtype=dtype, memory_format=res_format)
    _, plan = check((x, w, None, _vector(gen, out[1]), res, *conv, True, None, None, residual_stride), out, split, 11)
    # 16-byte residual loads only for channels_last, 8 | res_channels and pixel strides of 8 elements.
    assert plan.vector_residual == (res_format == CL and res_channels % 8 == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", ["3x3_c24_k40", "groups2", "3x3_s2_k36"])
def test_forced_split_with_prologue(name, split, dtype, gen, monkeypatch):
    monkeypatch.setenv(ENV, str(split))
    x, w, conv, out = _case(name, dtype, gen)
    c = x.shape[1]
    # A positive in_shift makes relu(in_shift) > 0, so padding before pre() would show.
    pre = (_vector(gen, c, positive=True), _vector(gen, c, positive=True))
    check((x, w, _vector(gen, out[1], positive=True), None, None, *conv, False, *pre, 1), out, split,
          SHAPES[name][1])


@pytest.mark.parametrize("split", SPLITS)
def test_forced_split_on_the_large_tile(split, gen, monkeypatch):
    """The 128x128 tile splits too when forced (the heuristic never splits it)."""
    monkeypatch.setenv(ENV, str(split))
    x = _randn(gen, 10, 64, 48, 48, dtype=torch.float16)  # 180 CTAs of 128x128
    w = _weight(gen, 128, 64, 3, 3, torch.float16)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    res = _randn(gen, 10, 128, 48, 48, dtype=torch.float16)
    args = (x, w, _vector(gen, 128, positive=True), _vector(gen, 128), res, *conv, True, None, None, 1)
    _, plan = check(args, (10, 128, 48, 48), split, 18)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    if sms <= 180:
        assert (plan.tile_m, plan.tile_n) == (128, 128)


def test_split_is_deterministic(gen, monkeypatch):
    """Same inputs, same bits: the partials are summed in a fixed order, no atomics."""
    monkeypatch.setenv(ENV, "7")
    x, w, conv, out = _case("1x1_c352", torch.float16, gen)
    args = (x, w, _vector(gen, out[1]), _vector(gen, out[1]), None, *conv, True, None, None, 1)
    first = _op(*args)
    for _ in range(3):
        assert torch.equal(_op(*args), first)


def test_split_one_disables_the_heuristic(gen, monkeypatch):
    args, out = _resnet50_layer_args("layer4.1.conv2", 1, torch.float16, gen)
    assert cuda_ops.conv_plan(*args).split > 1
    monkeypatch.setenv(ENV, "1")
    y, plan = run_poisoned(args, out)
    assert plan.split == 1 and plan.workspace_bytes == 0
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


def test_direct_kernel_ignores_a_forced_split(gen, monkeypatch):
    monkeypatch.setenv(ENV, "3")
    x = _randn(gen, 2, 12, 7, 7, dtype=torch.float16)  # 12 channels: not a multiple of 8
    w = _weight(gen, 16, 12, 3, 3, torch.float16)
    args = (x, w, None, _vector(gen, 16), None, [1, 1], [1, 1], [1, 1], 1, True, None, None, 1)
    y, plan = run_poisoned(args, (2, 16, 7, 7))
    assert plan.kernel == "direct" and plan.split == 1 and plan.workspace_bytes == 0
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@pytest.mark.parametrize("value", ["abc", "-1", "65536", "2.5", "3x"])
def test_bad_split_value_names_the_variable(value, gen, monkeypatch):
    monkeypatch.setenv(ENV, value)
    x, w, conv, _ = _case("1x1_c64", torch.float16, gen)
    args = (x, w, None, None, None, *conv, True, None, None, 1)
    with pytest.raises(RuntimeError, match=f"{ENV}='{value}' is not a split-K count"):
        _op(*args)
    with pytest.raises(RuntimeError, match=ENV):
        cuda_ops.conv_plan(*args)


def test_split_under_cuda_graph_capture(gen, monkeypatch):
    """The workspace comes from the caching allocator: capture and replay work, with fresh inputs."""
    monkeypatch.setenv(ENV, "3")
    x, w, conv, out = _case("1x1_c352", torch.float16, gen)
    sc, sh = _vector(gen, out[1], positive=True), _vector(gen, out[1])
    res = _randn(gen, *out, dtype=torch.float16)
    args = (x, w, sc, sh, res, *conv, True, None, None, 1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _op(*args)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = _op(*args)
    for _ in range(2):
        x.copy_(_randn(gen, *x.shape, dtype=torch.float16))
        res.copy_(_randn(gen, *res.shape, dtype=torch.float16))
        graph.replay()
        torch.cuda.synchronize()
        assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


def test_opcheck_with_a_forced_split(gen, monkeypatch):
    monkeypatch.setenv(ENV, "3")
    x, w, conv, out = _case("3x3_c24_k40", torch.float16, gen)
    res = _randn(gen, *out, dtype=torch.float16)
    args = (x, w, _vector(gen, out[1]), _vector(gen, out[1]), res, *conv, True, _vector(gen, x.shape[1]), None, 1)
    torch.library.opcheck(torch.ops.resnet_kernels.conv_bn_act_cuda.default, args)


# --- the heuristic ------------------------------------------------------------------------------

LATE_RESNET50 = ["layer3.1.conv1", "layer3.1.conv2", "layer4.0.conv2", "layer4.0.conv3", "layer4.1.conv1",
                 "layer4.1.conv2"]


def _resnet50_layer_args(name, batch, dtype, gen):
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    x = _randn(gen, batch, layer.C, layer.H, layer.W, dtype=dtype)
    w = _weight(gen, layer.K, layer.C // layer.groups, layer.R, layer.S, dtype)
    sc, sh = _vector(gen, layer.K, positive=True), _vector(gen, layer.K)
    res = _randn(gen, batch, layer.K, layer.P, layer.Q, dtype=dtype) if layer.has_residual else None
    conv = ([layer.stride] * 2, [layer.padding] * 2, [1, 1], layer.groups)
    return (x, w, sc, sh, res, *conv, layer.relu, None, None, 1), (batch, layer.K, layer.P, layer.Q)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", LATE_RESNET50)
def test_heuristic_splits_late_layers_at_batch_1(name, dtype, gen):
    """The documented rule's properties (conv_plan.cu), not a copy of it: small grid -> split,
    about one CTA per SM, >= 4 k tiles per split, <= 16 splits; and the result is right."""
    layer = next(lay for lay in model_layers("resnet50") if lay.name == name)
    args, out = _resnet50_layer_args(name, 1, dtype, gen)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    m = layer.P * layer.Q
    ctas = -(-m // 64) * -(-layer.K // 64)  # of the 64x64 tile
    k_tiles = -(-layer.C * layer.R * layer.S // 32)
    if 2 * ctas > sms:
        pytest.skip(f"{ctas} CTAs fill more than half of this GPU's {sms} SMs (an H100 has 132)")
    y, plan = run_poisoned(args, out)
    assert plan.kernel == "mma" and (plan.tile_m, plan.tile_n) == (64, 64), plan
    assert 1 < plan.split <= 16 and k_tiles // plan.split >= 4, plan
    assert k_tiles - -(-k_tiles // plan.split) >= 8, "a split saves at least 8 k tiles per CTA"
    assert ctas * plan.split < sms + ctas, plan
    assert plan.workspace_bytes == plan.split * m * layer.K * 4
    ref = oracle(*args)
    x, w, sc, sh, res = args[:5]
    assert_within_cudnn_error(y, x, w, sc, sh, res, layer, ref)


@pytest.mark.parametrize("name", ["layer1.1.conv1", "layer3.0.conv3"])
def test_heuristic_does_not_split_short_reductions(name, gen):
    """1x1 convs over 256 channels: 8 k tiles, at most 2 splits of 4, which would save only 4 k tiles per CTA."""
    args, out = _resnet50_layer_args(name, 1, torch.float16, gen)
    y, plan = run_poisoned(args, out)
    assert plan.split == 1 and plan.workspace_bytes == 0, plan
    assert rel_error(y, oracle(*args)) <= REL_TOL[torch.float16]


@pytest.mark.parametrize("name", LATE_RESNET50)
def test_heuristic_does_not_split_large_batches(name, gen):
    args, _ = _resnet50_layer_args(name, 256, torch.float16, gen)
    plan = cuda_ops.conv_plan(*args)
    assert plan.split == 1 and plan.workspace_bytes == 0, plan
