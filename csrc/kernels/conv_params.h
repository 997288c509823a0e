// Geometry and operands of one fused conv call, as raw pointers.
//
// This is the whole interface between the PyTorch op (csrc/conv_bn_act.cpp)
// and the kernels: nothing under csrc/kernels/ includes libtorch, so the
// standalone ctest (csrc/tests/) drives the same launchers with cudaMalloc'd
// buffers.
#pragma once

#include <cstdint>

namespace resnet_kernels {

struct ConvParams {
  // Dense channels_last buffers of the element type T of the launch:
  const void* x;  // input  (N, H, W, C)
  const void* w;  // weight (K, R, S, C/groups)  -- "KRSC"
  void* y;        // output (N, P, Q, K)

  // Per-channel float32 vectors, or nullptr when absent.
  const float* scale;     // (K,)  missing = 1
  const float* shift;     // (K,)  missing = 0
  const float* in_scale;  // (C,)  prologue; missing = 1
  const float* in_shift;  // (C,)  prologue; missing = 0; the prologue runs if either is set

  // Residual of type T, any strides, or nullptr. Output element (n, k, p, q)
  // with k < res_channels adds residual[n*res_stride_n + k*res_stride_c +
  // p*res_stride_h + q*res_stride_w]; the h/w strides already include the
  // option-A subsampling (tensor stride * residual_stride). k >= res_channels
  // adds 0 (option-A zero channels).
  const void* residual;
  int64_t res_stride_n, res_stride_c, res_stride_h, res_stride_w;
  int res_channels;

  int N, H, W, C;  // input
  int K, R, S;     // weight: K output channels, R x S taps
  int P, Q;        // output spatial size
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int groups;
  bool relu;

  // Derived sizes. Products that can pass 2^31 are int64.
  __host__ __device__ int64_t pixels() const { return int64_t(N) * P * Q; }  // GEMM M
  __host__ __device__ int c_per_group() const { return C / groups; }
  __host__ __device__ int k_per_group() const { return K / groups; }
  __host__ __device__ int gemm_k() const { return R * S * (C / groups); }   // reduction length
  __host__ __device__ bool has_prologue() const { return in_scale != nullptr || in_shift != nullptr; }
};

}  // namespace resnet_kernels
