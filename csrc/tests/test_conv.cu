// Standalone check of the conv launchers against a naive convolution.
//
// Needs only the CUDA runtime and csrc/kernels/ (no libtorch). For each case
// it builds random NCHW float tensors, computes the fused op with a naive
// NCHW float kernel, feeds the same values as NHWC/KRSC __half/__nv_bfloat16
// to launch_conv_bn_act (tensor-core or direct, whichever it picks) and to
// launch_direct_conv, and compares. Outputs are NaN-poisoned before each
// launch, so an element the kernel forgets to write fails the check.
// Exit status 0 when every case passes (run by ctest; needs a GPU).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/launch.h"

using resnet_kernels::ConvParams;

#define CHECK_CUDA(call)                                                                          \
  do {                                                                                            \
    const cudaError_t err_ = (call);                                                              \
    if (err_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      std::exit(2);                                                                               \
    }                                                                                             \
  } while (0)

struct Case {
  const char* name;
  int n, c, h, w, k, r, s, stride, pad, dil, groups;
  int residual;  // 0 none, 1 same shape (NHWC), 2 option A: K/2 channels, residual_stride 2 (NCHW)
  bool prologue, relu;
};

// Naive fused op, NCHW float: one thread per output element, written from the definition.
__global__ void naive_conv(const float* x, const float* w, const float* scale, const float* shift,
                           const float* in_scale, const float* in_shift, const float* res, int res_c, int res_h,
                           int res_w, int res_stride, Case cs, int P, int Q, float* y) {
  const long long total = (long long)cs.n * cs.k * P * Q;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int q = i % Q, p = (i / Q) % P, k = (i / ((long long)P * Q)) % cs.k, n = i / ((long long)cs.k * P * Q);
  const int cg = cs.c / cs.groups, g = k / (cs.k / cs.groups);
  float acc = 0.f;
  for (int c = 0; c < cg; ++c)
    for (int r = 0; r < cs.r; ++r)
      for (int s = 0; s < cs.s; ++s) {
        const int h = p * cs.stride - cs.pad + r * cs.dil, ww = q * cs.stride - cs.pad + s * cs.dil;
        if (h < 0 || h >= cs.h || ww < 0 || ww >= cs.w) continue;
        const int ci = g * cg + c;
        float v = x[(((long long)n * cs.c + ci) * cs.h + h) * cs.w + ww];
        if (in_scale) v = fmaxf(v * in_scale[ci] + in_shift[ci], 0.f);
        acc += v * w[(((long long)k * cg + c) * cs.r + r) * cs.s + s];
      }
  float v = acc * scale[k] + shift[k];
  if (res && k < res_c) v += res[(((long long)n * res_c + k) * res_h + p * res_stride) * res_w + q * res_stride];
  y[i] = cs.relu ? fmaxf(v, 0.f) : v;
}

template <typename T>
T* upload(const std::vector<float>& host) {
  std::vector<T> t(host.size());
  for (size_t i = 0; i < host.size(); ++i) t[i] = T(host[i]);
  T* dev = nullptr;
  CHECK_CUDA(cudaMalloc(&dev, t.size() * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(dev, t.data(), t.size() * sizeof(T), cudaMemcpyHostToDevice));
  return dev;
}

// Round to T and back, so the naive kernel sees exactly the values the kernels get.
template <typename T>
std::vector<float> rounded(std::vector<float> v) {
  for (float& e : v) e = float(T(e));
  return v;
}

// a[(i0*d1 + i1)*d2 + ...] reordered by `perm` (as torch's permute(...).contiguous()).
std::vector<float> permute4(const std::vector<float>& a, const int (&dims)[4], const int (&perm)[4]) {
  std::vector<float> out(a.size());
  const int od[4] = {dims[perm[0]], dims[perm[1]], dims[perm[2]], dims[perm[3]]};
  size_t o = 0;
  int idx[4];
  for (idx[0] = 0; idx[0] < od[0]; ++idx[0])
    for (idx[1] = 0; idx[1] < od[1]; ++idx[1])
      for (idx[2] = 0; idx[2] < od[2]; ++idx[2])
        for (idx[3] = 0; idx[3] < od[3]; ++idx[3]) {
          int src[4];
          for (int d = 0; d < 4; ++d) src[perm[d]] = idx[d];
          out[o++] = a[((size_t(src[0]) * dims[1] + src[1]) * dims[2] + src[2]) * dims[3] + src[3]];
        }
  return out;
}

// The RESNET_KERNELS_CUDA_KERNEL value that forces a wgmma tile.
const char* wgmma_env_value(resnet_kernels::KernelChoice tile) {
  switch (tile) {
    case resnet_kernels::KernelChoice::kWgmmaN64:
      return "wgmma_n64";
    case resnet_kernels::KernelChoice::kWgmmaN128:
      return "wgmma_n128";
    default:
      return "wgmma_n256";
  }
}

// Name of a WgmmaLoads value, for the report.
const char* loads_name(resnet_kernels::WgmmaLoads loads) {
  switch (loads) {
    case resnet_kernels::WgmmaLoads::kTmaB:
      return "tma_b";
    case resnet_kernels::WgmmaLoads::kTmaAB:
      return "tma_ab";
    case resnet_kernels::WgmmaLoads::kTmaIm2col:
      return "tma_im2col";
    default:
      return "cp.async";
  }
}

template <typename T>
// wgmma: kMma runs launch_conv_bn_act's own choice; kWgmmaN64 / N128 / N256 run
// the wgmma kernel with that tile on the cases the tensor-core path takes,
// through plan_conv under RESNET_KERNELS_CUDA_KERNEL=wgmma_n64 / _n128 / _n256
// (the op's own path: selection, vector flags, plan_fits), with the plan's
// epilogue or, with wgmma_paired, the paired one (vector flags cleared);
// wgmma_tma: the value of RESNET_KERNELS_CUDA_TMA: "1" (TMA loads where they
// apply: the plan must say kTmaAB for the plain-GEMM cases, kTmaIm2col for
// the other ones with 64 | Cg and no prologue, kTmaB for the rest),
// "weights" (kTmaB) or "0" (cp.async loads);
// wgmma_persistent: the value of RESNET_KERNELS_CUDA_PERSISTENT: "1" (the
// persistent warp-specialised kernel where the plan's loads are kTmaAB or
// kTmaIm2col and the epilogue tensors admit TMA: the plan must say so) or "0"
// (the one-tile-per-CTA kernel).
// split: -1 = launch_conv_bn_act without a workspace (never splits); 0 = the
// plan of plan_conv's split-K heuristic, n >= 1 = the mma.sync plan with
// split-K forced to min(n, k tiles); both with a cudaMalloc'd workspace.
bool run_case(const Case& cs, bool direct_only, std::mt19937& rng,
              resnet_kernels::KernelChoice wgmma = resnet_kernels::KernelChoice::kMma, int split = -1,
              bool wgmma_paired = false, const char* wgmma_tma = "1", const char* wgmma_persistent = "0") {
  const int P = (cs.h + 2 * cs.pad - cs.dil * (cs.r - 1) - 1) / cs.stride + 1;
  const int Q = (cs.w + 2 * cs.pad - cs.dil * (cs.s - 1) - 1) / cs.stride + 1;
  const int cg = cs.c / cs.groups;
  std::normal_distribution<float> normal;
  auto randn = [&](size_t count, float mul, float add) {
    std::vector<float> v(count);
    for (float& e : v) e = add + mul * normal(rng);
    return v;
  };
  const std::vector<float> x = rounded<T>(randn(size_t(cs.n) * cs.c * cs.h * cs.w, 1.f, 0.f));
  const std::vector<float> w = rounded<T>(randn(size_t(cs.k) * cg * cs.r * cs.s, 1.f / std::sqrt(cg * cs.r * cs.s), 0.f));
  const std::vector<float> scale = randn(cs.k, 0.2f, 1.f), shift = randn(cs.k, 0.2f, 0.f);
  const std::vector<float> in_scale = randn(cs.c, 0.2f, 1.f), in_shift = randn(cs.c, 0.5f, 0.f);
  const int res_stride = cs.residual == 2 ? 2 : 1;
  const int res_c = cs.residual == 2 ? cs.k / 2 : cs.k;
  const int res_h = P * res_stride, res_w = Q * res_stride;
  const std::vector<float> res = rounded<T>(randn(size_t(cs.n) * res_c * res_h * res_w, 1.f, 0.f));

  // Reference on the GPU.
  float* dev[8];
  const std::vector<float>* host[7] = {&x, &w, &scale, &shift, &in_scale, &in_shift, &res};
  for (int i = 0; i < 7; ++i) dev[i] = upload<float>(*host[i]);
  const size_t out_count = size_t(cs.n) * cs.k * P * Q;
  CHECK_CUDA(cudaMalloc(&dev[7], out_count * sizeof(float)));
  naive_conv<<<unsigned((out_count + 255) / 256), 256>>>(dev[0], dev[1], dev[2], dev[3], cs.prologue ? dev[4] : nullptr,
                                                         dev[5], cs.residual ? dev[6] : nullptr, res_c, res_h, res_w,
                                                         res_stride, cs, P, Q, dev[7]);
  CHECK_CUDA(cudaGetLastError());
  std::vector<float> ref_nchw(out_count);
  CHECK_CUDA(cudaMemcpy(ref_nchw.data(), dev[7], out_count * sizeof(float), cudaMemcpyDeviceToHost));

  // The kernel under test: NHWC x, KRSC w, NHWC output; residual NHWC (same
  // shape) or NCHW (option A) to exercise the stride arithmetic.
  T* x_nhwc = upload<T>(permute4(x, {cs.n, cs.c, cs.h, cs.w}, {0, 2, 3, 1}));
  T* w_krsc = upload<T>(permute4(w, {cs.k, cg, cs.r, cs.s}, {0, 2, 3, 1}));
  const bool res_nhwc = cs.residual == 1;
  T* res_dev = upload<T>(res_nhwc ? permute4(res, {cs.n, res_c, res_h, res_w}, {0, 2, 3, 1}) : res);
  T* y = nullptr;
  CHECK_CUDA(cudaMalloc(&y, out_count * sizeof(T)));
  CHECK_CUDA(cudaMemset(y, 0xff, out_count * sizeof(T)));  // all-ones bits: NaN in fp16 and bf16

  ConvParams p{};
  p.x = x_nhwc, p.w = w_krsc, p.y = y;
  p.scale = dev[2], p.shift = dev[3];
  if (cs.prologue) p.in_scale = dev[4], p.in_shift = dev[5];
  if (cs.residual) {
    p.residual = res_dev;
    p.res_channels = res_c;
    p.res_stride_n = int64_t(res_c) * res_h * res_w;
    p.res_stride_c = res_nhwc ? 1 : int64_t(res_h) * res_w;
    p.res_stride_h = (res_nhwc ? int64_t(res_w) * res_c : res_w) * res_stride;
    p.res_stride_w = (res_nhwc ? res_c : 1) * res_stride;
  }
  p.N = cs.n, p.H = cs.h, p.W = cs.w, p.C = cs.c, p.K = cs.k, p.R = cs.r, p.S = cs.s, p.P = P, p.Q = Q;
  p.stride_h = p.stride_w = cs.stride, p.pad_h = p.pad_w = cs.pad, p.dil_h = p.dil_w = cs.dil;
  p.groups = cs.groups, p.relu = cs.relu;
  const bool tensor_cores = !direct_only && resnet_kernels::implicit_gemm_supports(p);
  const bool use_wgmma = tensor_cores && wgmma != resnet_kernels::KernelChoice::kMma;
  // Split-K: the workspace is NaN-poisoned (0xff bytes are NaN in fp32 too), so
  // a partial the reduce reads without the GEMM having written it shows up.
  const bool use_split = tensor_cores && !use_wgmma && split >= 0;
  resnet_kernels::ConvPlan plan{};
  void* workspace = nullptr;
  char label[64] = "";
  if (use_wgmma) {
    int device = 0, num_sms = 0;
    CHECK_CUDA(cudaGetDevice(&device));
    CHECK_CUDA(resnet_kernels::multiprocessor_count(device, &num_sms));
    setenv("RESNET_KERNELS_CUDA_KERNEL", wgmma_env_value(wgmma), 1);
    setenv("RESNET_KERNELS_CUDA_TMA", wgmma_tma, 1);
    setenv("RESNET_KERNELS_CUDA_PERSISTENT", wgmma_persistent, 1);
    const cudaError_t err = resnet_kernels::plan_conv(p, device, num_sms, 0, &plan);
    unsetenv("RESNET_KERNELS_CUDA_KERNEL");
    unsetenv("RESNET_KERNELS_CUDA_TMA");
    unsetenv("RESNET_KERNELS_CUDA_PERSISTENT");
    CHECK_CUDA(err);
    using resnet_kernels::WgmmaLoads;
    const bool all = std::strcmp(wgmma_tma, "1") == 0, weights = std::strcmp(wgmma_tma, "weights") == 0;
    const WgmmaLoads loads = weights                                     ? WgmmaLoads::kTmaB
                             : !all                                      ? WgmmaLoads::kCpAsync
                             : resnet_kernels::tma_gemm_input_ok(p)      ? WgmmaLoads::kTmaAB
                             : resnet_kernels::tma_im2col_input_ok(p)    ? WgmmaLoads::kTmaIm2col
                                                                         : WgmmaLoads::kTmaB;
    const bool persistent = std::strcmp(wgmma_persistent, "1") == 0 && resnet_kernels::wgmma_persistent(p, loads, true);
    if (plan.kernel != wgmma || plan.loads != loads || plan.persistent != persistent) {  // a selection bug: fail (and leak this case's buffers)
      std::printf("FAIL  %-28s %s planned kernel %d, loads %s, persistent %d (expected %s, %d)\n", cs.name,
                  wgmma_env_value(wgmma), int(plan.kernel), loads_name(plan.loads), int(plan.persistent),
                  loads_name(loads), int(persistent));
      return false;
    }
    if (wgmma_paired) plan.vector_output = plan.vector_residual = false;  // (the caller keeps persistent off)
    if (plan.persistent)
      std::snprintf(label, sizeof(label), "wgmma ws %dx%d %s", plan.tile_m, plan.tile_n, loads_name(plan.loads));
    else
      std::snprintf(label, sizeof(label), "wgmma %dx%d%s%s %s", plan.tile_m, plan.tile_n,
                    plan.vector_output ? " v" : " paired", plan.vector_residual ? "r" : "", loads_name(plan.loads));
  }
  if (use_split) {
    int device = 0, num_sms = 0;
    CHECK_CUDA(cudaGetDevice(&device));
    CHECK_CUDA(resnet_kernels::multiprocessor_count(device, &num_sms));
    CHECK_CUDA(resnet_kernels::plan_conv(p, device, num_sms, split, &plan));
    if (plan.workspace_bytes > 0) {
      CHECK_CUDA(cudaMalloc(&workspace, plan.workspace_bytes));
      CHECK_CUDA(cudaMemset(workspace, 0xff, plan.workspace_bytes));
    }
    std::snprintf(label, sizeof(label), "%s %d%s", split == 0 ? "plan, split" : "split-K", plan.split,
                  plan.vector_output ? " v" : "");
  }
  CHECK_CUDA(direct_only              ? resnet_kernels::launch_direct_conv<T>(p, 0)
             : use_split || use_wgmma ? resnet_kernels::launch_conv_bn_act<T>(p, plan, workspace, plan.workspace_bytes, 0)
                                      : resnet_kernels::launch_conv_bn_act<T>(p, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<T> out(out_count);
  CHECK_CUDA(cudaMemcpy(out.data(), y, out_count * sizeof(T), cudaMemcpyDeviceToHost));

  // |out - ref| <= tol * (|ref| + rms(ref)): output rounding plus fp32 summation order.
  const std::vector<float> ref = permute4(ref_nchw, {cs.n, cs.k, P, Q}, {0, 2, 3, 1});
  double sq = 0;
  for (float v : ref) sq += double(v) * v;
  const double rms = std::sqrt(sq / ref.size());
  const double tol = std::is_same<T, __half>::value ? 4e-3 : 2e-2;
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < out_count; ++i) {
    const double err = std::fabs(double(float(out[i])) - ref[i]);
    if (!(err <= tol * (std::fabs(ref[i]) + rms))) ++bad;  // NaN (unwritten) counts as bad
    if (err > worst || std::isnan(err)) worst = err;
  }
  std::printf("%-5s %-28s %-30s %s  max err %.3g (rms %.3g), %zu bad\n", bad ? "FAIL" : "ok", cs.name,
              !tensor_cores ? "direct" : use_split || use_wgmma ? label : "tensor-core",
              std::is_same<T, __half>::value ? "fp16" : "bf16", worst, rms, bad);
  for (float* d : dev) CHECK_CUDA(cudaFree(d));
  for (void* d : {(void*)x_nhwc, (void*)w_krsc, (void*)res_dev, (void*)y, workspace}) CHECK_CUDA(cudaFree(d));
  return bad == 0;
}

// usage: test_conv [--quick]
// --quick (for the sanitizers, which slow every launch 10-100x): fp16 only, no
// direct-only pass, split-K 0 and 3, each wgmma tile with its planned epilogue
// (TMA and cp.async loads), and without the one large case; the same kernels
// and code paths otherwise.
int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && !quick) {
    std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
    return 2;
  }
  const Case cases[] = {
      // name                          n    c   h   w    k  r  s st pad dil g  res pro  relu
      {"3x3 s1, residual", 2, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, false, true},
      {"3x3 s1, large tile", 8, 64, 56, 56, 128, 3, 3, 1, 1, 1, 1, 1, false, true},
      {"1x1 s2 projection", 2, 64, 16, 16, 256, 1, 1, 2, 0, 1, 1, 0, false, false},
      {"grouped 16x8, prologue", 2, 128, 14, 14, 128, 3, 3, 2, 1, 1, 16, 0, true, true},
      {"stem 7x7 s2 C=3", 2, 3, 32, 32, 64, 7, 7, 2, 3, 1, 1, 0, false, true},
      {"option A residual", 2, 16, 16, 16, 32, 3, 3, 2, 1, 1, 1, 2, false, true},
      {"dilation 2, tails", 1, 32, 9, 11, 48, 3, 3, 1, 2, 2, 1, 1, true, false},
      {"depthwise", 2, 32, 10, 10, 32, 3, 3, 1, 1, 1, 32, 0, true, true},
      {"odd K", 1, 16, 8, 8, 9, 3, 3, 1, 1, 1, 1, 0, false, true},
      {"gemm_k tail (C=8)", 2, 8, 12, 12, 16, 3, 3, 1, 1, 1, 1, 1, true, true},
      {"M, K, gemm_k tails, K=200", 3, 72, 9, 9, 200, 3, 3, 1, 1, 1, 1, 1, true, true},
      {"1x1 K=512, option A", 2, 256, 8, 8, 512, 1, 1, 1, 0, 1, 1, 2, false, true},
      {"K=36: 32-bit stores", 2, 32, 10, 10, 36, 3, 3, 1, 1, 1, 1, 1, true, true},
      {"batch 1, 7x7, 512->512", 1, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, false, true},
      // 1x1 stride 1 (A by TMA in the wgmma kernel): M = 147 (a 128-row tail), Cg = 72 (the
      // second k tile mostly past the channels), K = 200 (N tails)
      {"1x1 GEMM, M/C/K tails", 3, 72, 7, 7, 200, 1, 1, 1, 0, 1, 1, 1, false, true},
      // ... 4 groups of Cg = 16, Kg = 24: the group offset in A, B and y
      {"1x1 GEMM, 4 groups", 2, 64, 6, 6, 96, 1, 1, 1, 0, 1, 4, 0, false, true},
      // 64 | Cg without prologue (A by im2col TMA in the wgmma kernel): dilation 2 with
      // padding 2; a 5x5 at stride 2 with odd sizes; 2 groups of 64 channels
      {"im2col dilation 2", 2, 64, 9, 11, 64, 3, 3, 1, 2, 2, 1, 1, false, true},
      {"im2col 5x5 s2, K=40", 2, 64, 15, 13, 40, 5, 5, 2, 2, 1, 1, 0, false, false},
      {"im2col 2 groups of 64", 2, 128, 10, 10, 128, 3, 3, 1, 1, 1, 2, 1, false, true},
  };
  std::mt19937 rng(1234);
  bool ok = true;
  auto skip = [&](const Case& cs) { return quick && std::strcmp(cs.name, "3x3 s1, large tile") == 0; };
  for (const Case& cs : cases)
    for (bool direct_only : {false, true}) {
      if (skip(cs) || (quick && direct_only)) continue;
      ok = run_case<__half>(cs, direct_only, rng) && ok;
      if (!quick) ok = run_case<__nv_bfloat16>(cs, direct_only, rng) && ok;
    }
  // The heuristic's own plan (split 16 on the batch-1 7x7 case on an H100),
  // then split-K forced to 2, 3 and 7 splits (clamped to the k tiles: uneven
  // ranges, and S > k tiles on the 1- and 2-tile cases) on every tensor-core case.
  for (const Case& cs : cases)
    for (int split : {0, 2, 3, 7}) {
      if (skip(cs) || (quick && (split == 2 || split == 7))) continue;
      ok = run_case<__half>(cs, false, rng, resnet_kernels::KernelChoice::kMma, split) && ok;
      if (!quick) ok = run_case<__nv_bfloat16>(cs, false, rng, resnet_kernels::KernelChoice::kMma, split) && ok;
    }
  // The Hopper wgmma kernel, all three tiles, on every case (tensor-core
  // cases; the rest run the direct kernel again), each with its planned
  // epilogue (16-byte staged where 8 | Kg: "v", "vr" with 16-byte residual
  // loads) and with the paired one, each with TMA loads (B, and A where the
  // case admits it: tiled for 1x1 stride 1, im2col for 64 | Cg), with TMA for
  // B only, and with cp.async loads; with TMA loads and the planned epilogue
  // also through the persistent warp-specialised kernel where the plan takes
  // it ("wgmma ws" lines: TMA operands, residual and output). On a compute capability
  // 9.0 device its absence is a build error (sm_90a missing from
  // CMAKE_CUDA_ARCHITECTURES).
  int device = 0, major = 0, minor = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const bool wgmma = resnet_kernels::wgmma_available(device);
  std::printf("wgmma kernel: %s\n", wgmma ? "available, tested below" : "not available, skipped");
  if (!wgmma && major == 9 && minor == 0) {
    std::printf("FAIL  compute capability 9.0 without sm_90a code for the wgmma kernel\n");
    ok = false;
  }
  for (const Case& cs : cases)
    for (auto tile : {resnet_kernels::KernelChoice::kWgmmaN64, resnet_kernels::KernelChoice::kWgmmaN128,
                      resnet_kernels::KernelChoice::kWgmmaN256})
      for (bool paired : {false, true})
        for (const char* tma : {"1", "weights", "0"})
          for (const char* persistent : {"1", "0"}) {
            if (!wgmma) break;
            if (skip(cs) || (quick && (paired || std::strcmp(tma, "weights") == 0))) continue;
            if (std::strcmp(persistent, "1") == 0 && (paired || std::strcmp(tma, "1") != 0)) continue;
            ok = run_case<__half>(cs, false, rng, tile, -1, paired, tma, persistent) && ok;
            if (!quick) ok = run_case<__nv_bfloat16>(cs, false, rng, tile, -1, paired, tma, persistent) && ok;
          }
  std::printf(ok ? "all cases passed\n" : "FAILED\n");
  return ok ? 0 : 1;
}
