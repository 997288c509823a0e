// The PyTorch op resnet_kernels::conv_bn_act_cuda: checks, layouts, launch.
//
// A thin wrapper over the raw-pointer launchers in kernels/: it validates the
// call (the op may be called directly, not only through resnet_kernels.ops),
// brings x to NHWC and the weight to KRSC, allocates the output, fills a
// ConvParams, plans the launch (kernel, tile, split-K: kernels/launch.h),
// allocates the split-K workspace if any and launches on the current stream.
//
// Layouts. The kernels read dense NHWC x and KRSC w. A (K, C/g, R, S) weight
// in channels_last memory *is* KRSC, so both conversions are
// .contiguous(channels_last): free for a channels_last model
// (model.to(memory_format=torch.channels_last) converts conv weights too), one
// copy per call otherwise. The kernels write NHWC; a non-channels_last x gets
// its contiguous output through one more copy. The residual is read through
// its own strides, never copied.
//
// The cuda backend does not call this op as is: resnet_kernels/cuda_conv.py
// hands it a KRSC weight cached per weight version (so the weight conversion
// above is free) and rewrites calls with C/groups not a multiple of 8 (the C=3
// stem: channel padding; ResNeXt's 4 channels per group: block-diagonal group
// merging) into equivalent ones the tensor-core kernel takes. Called directly,
// such calls still run, on the direct kernel.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS  // per-op headers only: keeps this TU's compile short
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <array>
#include <limits>
#include <vector>

#include "kernels/launch.h"

namespace resnet_kernels {
namespace {

constexpr const char* kOp = "conv_bn_act_cuda";

int checked_int(int64_t v, const char* what) {
  TORCH_CHECK(v <= std::numeric_limits<int>::max(), kOp, ": ", what, " = ", v, " does not fit in 32 bits");
  return static_cast<int>(v);
}

void check_device(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.is_cuda(), kOp, ": ", name, " must be a CUDA tensor, got device ", t.device(),
              " (use backend='reference' or 'triton' for CPU tensors)");
  TORCH_CHECK(t.device() == x.device(), kOp, ": ", name, " is on ", t.device(), " but x is on ", x.device());
}

// scale/shift/in_scale/in_shift: None or float32 of shape (length,).
const float* vector_ptr(const std::optional<at::Tensor>& v, const char* name, int64_t length, const char* what,
                        const at::Tensor& x) {
  if (!v.has_value()) return nullptr;
  check_device(*v, name, x);
  TORCH_CHECK(v->scalar_type() == at::kFloat, kOp, ": ", name, " must be float32, got ", v->scalar_type());
  TORCH_CHECK(v->dim() == 1 && v->size(0) == length, kOp, ": ", name, " must have shape (", length,
              ",) (one value per ", what, "), got ", v->sizes());
  TORCH_CHECK(v->is_contiguous(), kOp, ": ", name, " must be contiguous");
  return v->data_ptr<float>();
}

// Fills the residual fields of p; the shape rule is option A's (see ConvParams).
void set_residual(ConvParams& p, const std::optional<at::Tensor>& residual, int64_t residual_stride,
                  const at::Tensor& x) {
  TORCH_CHECK(residual_stride >= 1, kOp, ": residual_stride must be positive, got ", residual_stride);
  if (!residual.has_value()) {
    TORCH_CHECK(residual_stride == 1, kOp, ": residual_stride is set but residual is None");
    return;
  }
  const at::Tensor& r = *residual;
  check_device(r, "residual", x);
  TORCH_CHECK(r.scalar_type() == x.scalar_type(), kOp, ": residual has dtype ", r.scalar_type(), " but x has ",
              x.scalar_type());
  TORCH_CHECK(r.dim() == 4, kOp, ": residual must be 4-D, got shape ", r.sizes());
  const int64_t rs = residual_stride;
  TORCH_CHECK(r.size(0) == p.N && r.size(1) >= 1 && r.size(1) <= p.K && (r.size(2) + rs - 1) / rs == p.P &&
                  (r.size(3) + rs - 1) / rs == p.Q,
              kOp, ": residual shape ", r.sizes(), " with residual_stride=", rs, " does not fit the output (", p.N,
              ", ", p.K, ", ", p.P, ", ", p.Q, ")");
  p.residual = r.data_ptr();
  p.res_channels = static_cast<int>(r.size(1));
  p.res_stride_n = r.stride(0);
  p.res_stride_c = r.stride(1);
  p.res_stride_h = r.stride(2) * rs;
  p.res_stride_w = r.stride(3) * rs;
}

std::array<int, 2> pair(at::IntArrayRef v, const char* name, int64_t min) {
  TORCH_CHECK(v.size() == 2, kOp, ": ", name, " must have 2 values, got ", v.size());
  TORCH_CHECK(v[0] >= min && v[1] >= min, kOp, ": ", name, " must be >= ", min, ", got ", v);
  return {checked_int(v[0], name), checked_int(v[1], name)};
}

// The op's checks and the call's geometry, per-channel vectors and residual
// in p (x, w and y are set by the caller, after the layout conversions).
ConvParams checked_params(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& scale,
                          const std::optional<at::Tensor>& shift, const std::optional<at::Tensor>& residual,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                          bool relu, const std::optional<at::Tensor>& in_scale,
                          const std::optional<at::Tensor>& in_shift, int64_t residual_stride) {
  check_device(x, "x", x);
  check_device(weight, "weight", x);
  TORCH_CHECK(x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16, kOp,
              ": supports float16 and bfloat16 inputs; x is ", x.scalar_type(),
              ". For float32 use backend='triton' or backend='reference'");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), kOp, ": weight has dtype ", weight.scalar_type(),
              " but x has ", x.scalar_type());
  TORCH_CHECK(x.dim() == 4, kOp, ": x must be 4-D (N, C, H, W), got shape ", x.sizes());
  TORCH_CHECK(weight.dim() == 4, kOp, ": weight must be 4-D (K, C/groups, R, S), got shape ", weight.sizes());
  TORCH_CHECK(x.numel() > 0 && weight.numel() > 0, kOp, ": x and weight must be non-empty");
  TORCH_CHECK(groups >= 1 && x.size(1) % groups == 0 && weight.size(0) % groups == 0 &&
                  weight.size(1) * groups == x.size(1),
              kOp, ": groups=", groups, " does not fit x ", x.sizes(), " and weight ", weight.sizes());
  const auto [stride_h, stride_w] = pair(stride, "stride", 1);
  const auto [pad_h, pad_w] = pair(padding, "padding", 0);
  const auto [dil_h, dil_w] = pair(dilation, "dilation", 1);

  ConvParams p{};
  p.N = checked_int(x.size(0), "N");
  p.C = checked_int(x.size(1), "C");
  p.H = checked_int(x.size(2), "H");
  p.W = checked_int(x.size(3), "W");
  p.K = checked_int(weight.size(0), "K");
  p.R = checked_int(weight.size(2), "R");
  p.S = checked_int(weight.size(3), "S");
  p.stride_h = stride_h, p.stride_w = stride_w, p.pad_h = pad_h, p.pad_w = pad_w, p.dil_h = dil_h, p.dil_w = dil_w;
  p.groups = checked_int(groups, "groups");
  // PyTorch's output size floor((H + 2p - d(R-1) - 1) / s) + 1; a negative span means no output
  // (and C++ division would truncate it towards zero, so it is checked first).
  const int64_t span_h = int64_t(p.H) + 2 * pad_h - int64_t(dil_h) * (p.R - 1) - 1;
  const int64_t span_w = int64_t(p.W) + 2 * pad_w - int64_t(dil_w) * (p.S - 1) - 1;
  TORCH_CHECK(span_h >= 0 && span_w >= 0, kOp, ": output would be empty: input ", p.H, "x", p.W, " with kernel ",
              p.R, "x", p.S, ", padding ", padding, ", dilation ", dilation);
  p.P = checked_int(span_h / stride_h + 1, "P");
  p.Q = checked_int(span_w / stride_w + 1, "Q");
  checked_int(int64_t(p.R) * p.S * (p.C / p.groups), "R*S*C/groups");
  p.relu = relu;
  p.scale = vector_ptr(scale, "scale", p.K, "output channel", x);
  p.shift = vector_ptr(shift, "shift", p.K, "output channel", x);
  p.in_scale = vector_ptr(in_scale, "in_scale", p.C, "input channel", x);
  p.in_shift = vector_ptr(in_shift, "in_shift", p.C, "input channel", x);
  set_residual(p, residual, residual_stride, x);
  return p;
}

// The dense NHWC x and KRSC w the kernels read (copies where the caller's
// layouts differ, kept alive here) and p pointing at them (p.y still unset).
// Made under the caller's device guard.
struct KernelCall {
  ConvParams p;
  at::Tensor x_nhwc, w_krsc;
  KernelCall(const ConvParams& checked, const at::Tensor& x, const at::Tensor& weight)
      : p(checked),
        x_nhwc(x.contiguous(at::MemoryFormat::ChannelsLast)),
        w_krsc(weight.contiguous(at::MemoryFormat::ChannelsLast)) {
    p.x = x_nhwc.data_ptr();
    p.w = w_krsc.data_ptr();
  }
};

// The launch plan of p on x's device (x's device must be current), with
// RESNET_KERNELS_CUDA_KERNEL, RESNET_KERNELS_CUDA_SPLIT_K, RESNET_KERNELS_CUDA_TMA and
// RESNET_KERNELS_CUDA_PERSISTENT read now (see
// kernels/launch.h): a bad value is the caller's error, not a CUDA one, and
// raises naming the variable. The multiprocessor count comes from the
// launcher library's per-device cache.
ConvPlan plan_call(const ConvParams& p, const at::Tensor& x) {
  if (const char* why = kernel_choice_error(x.get_device())) TORCH_CHECK(false, kOp, ": ", why);
  int forced_split = 0;
  if (const char* why = split_k_from_env(&forced_split)) TORCH_CHECK(false, kOp, ": ", why);
  TmaChoice tma = TmaChoice::kAll;
  if (const char* why = tma_from_env(&tma)) TORCH_CHECK(false, kOp, ": ", why);
  bool persistent = true;
  if (const char* why = persistent_from_env(&persistent)) TORCH_CHECK(false, kOp, ": ", why);
  int num_sms = 0;
  C10_CUDA_CHECK(multiprocessor_count(x.get_device(), &num_sms));
  ConvPlan plan{};
  C10_CUDA_CHECK(plan_conv(p, x.get_device(), num_sms, forced_split, &plan));
  return plan;
}

}  // namespace

at::Tensor conv_bn_act_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& scale,
                            const std::optional<at::Tensor>& shift, const std::optional<at::Tensor>& residual,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            bool relu, const std::optional<at::Tensor>& in_scale,
                            const std::optional<at::Tensor>& in_shift, int64_t residual_stride) {
  const c10::cuda::CUDAGuard guard(x.device());
  KernelCall call(checked_params(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                                 in_shift, residual_stride),
                  x, weight);
  ConvParams& p = call.p;
  at::Tensor y = at::empty({p.N, p.K, p.P, p.Q}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  p.y = y.data_ptr();

  const ConvPlan plan = plan_call(p, x);  // after p.y is set: the vector paths depend on its alignment
  // Split-K partials (any contents: every byte read is written first). From
  // the caching allocator on the current stream: no cudaMalloc or sync per
  // call, capturable in a CUDA graph (the graph's pool then owns it). It is
  // released when this function returns, before the kernels ran; the
  // allocator only hands the block to later work on this stream, which
  // stream order puts after them.
  at::Tensor workspace;
  if (plan.workspace_bytes > 0)
    workspace = at::empty({static_cast<int64_t>(plan.workspace_bytes)}, x.options().dtype(at::kByte));
  void* const ws = workspace.defined() ? workspace.data_ptr() : nullptr;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (x.scalar_type() == at::kHalf) {
    C10_CUDA_CHECK(launch_conv_bn_act<__half>(p, plan, ws, plan.workspace_bytes, stream));
  } else {
    C10_CUDA_CHECK(launch_conv_bn_act<__nv_bfloat16>(p, plan, ws, plan.workspace_bytes, stream));
  }
  // Same rule as resnet_kernels._args.output_memory_format.
  const bool channels_last = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
  return channels_last ? y : y.contiguous();
}

// conv_plan_cuda: what conv_bn_act_cuda would launch for these arguments, now,
// on x's device: [kernel (0 direct, 1 mma.sync, 2 wgmma), tile_m, tile_n,
// split, workspace_bytes, vector_output, vector_residual, loads (WgmmaLoads:
// 0 cp.async, 1 TMA for B, 2 TMA for A and B, 3 TMA for B and im2col TMA
// for A), persistent (1: the persistent warp-specialised wgmma kernel)]
// (see ConvPlan). Runs
// the op's checks and layout conversions but launches nothing; the output is
// taken as 16-byte aligned, as the op's fresh allocation is. For tests and
// benchmarks (resnet_kernels.cuda_ops.conv_plan).
std::vector<int64_t> conv_plan_cuda(const at::Tensor& x, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                    const std::optional<at::Tensor>& residual, at::IntArrayRef stride,
                                    at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, bool relu,
                                    const std::optional<at::Tensor>& in_scale,
                                    const std::optional<at::Tensor>& in_shift, int64_t residual_stride) {
  const c10::cuda::CUDAGuard guard(x.device());
  KernelCall call(checked_params(x, weight, scale, shift, residual, stride, padding, dilation, groups, relu, in_scale,
                                 in_shift, residual_stride),
                  x, weight);
  call.p.y = nullptr;  // stands for a fresh, 16-byte aligned allocation
  const ConvPlan plan = plan_call(call.p, x);
  const int64_t kernel = !plan.tensor_cores ? 0 : plan.kernel == KernelChoice::kMma ? 1 : 2;
  return {kernel, plan.tile_m, plan.tile_n, plan.split, static_cast<int64_t>(plan.workspace_bytes),
          plan.vector_output, plan.vector_residual, static_cast<int64_t>(plan.loads), plan.persistent};
}

// Called with CPU tensors only (the CUDA kernel handles mixed devices).
at::Tensor conv_bn_act_cuda_on_cpu(const at::Tensor& x, const at::Tensor&, const std::optional<at::Tensor>&,
                                   const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                   at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, bool,
                                   const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, int64_t) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, kOp, ": x must be a CUDA tensor, got device ", x.device(),
                              " (use backend='reference' or 'triton' for CPU tensors)");
}

TORCH_LIBRARY_FRAGMENT(resnet_kernels, m) {
  m.set_python_module("resnet_kernels.cuda_ops");  // where the fake (meta) function lives
  m.def(
      "conv_bn_act_cuda(Tensor x, Tensor weight, Tensor? scale, Tensor? shift, Tensor? residual, int[] stride, "
      "int[] padding, int[] dilation, int groups, bool relu, Tensor? in_scale, Tensor? in_shift, "
      "int residual_stride) -> Tensor");
  m.def(
      "conv_plan_cuda(Tensor x, Tensor weight, Tensor? scale, Tensor? shift, Tensor? residual, int[] stride, "
      "int[] padding, int[] dilation, int groups, bool relu, Tensor? in_scale, Tensor? in_shift, "
      "int residual_stride) -> int[]");
}

TORCH_LIBRARY_IMPL(resnet_kernels, CUDA, m) {
  m.impl("conv_bn_act_cuda", &conv_bn_act_cuda);
  m.impl("conv_plan_cuda", &conv_plan_cuda);
}
TORCH_LIBRARY_IMPL(resnet_kernels, CPU, m) { m.impl("conv_bn_act_cuda", &conv_bn_act_cuda_on_cpu); }

}  // namespace resnet_kernels
