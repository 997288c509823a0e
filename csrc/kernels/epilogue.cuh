// The fused epilogue and prologue arithmetic, shared by both kernels so the
// contract is written once:
//   y = relu?(scale[k] * acc + shift[k] + residual(n, k, p, q))
//   pre(x) = relu(in_scale[c] * x + in_shift[c])
#pragma once

#include "kernels/conv_params.h"
#include "kernels/numeric.cuh"

namespace resnet_kernels {

// The pixel part of the residual offset of output pixel m = (n*P + p)*Q + q.
__device__ __forceinline__ int64_t residual_pixel_offset(const ConvParams& p, int64_t m) {
  const int64_t pq = int64_t(p.P) * p.Q;
  const int64_t n = m / pq;
  const int64_t rem = m - n * pq;
  const int64_t row = rem / p.Q;
  const int64_t col = rem - row * p.Q;
  return n * p.res_stride_n + row * p.res_stride_h + col * p.res_stride_w;
}

// Output channel k of the pixel whose residual offset is res_pixel.
template <typename T>
__device__ __forceinline__ float epilogue(const ConvParams& p, float acc, int k, int64_t res_pixel) {
  float v = p.scale ? acc * __ldg(p.scale + k) : acc;
  if (p.shift) v += __ldg(p.shift + k);
  if (p.residual && k < p.res_channels)  // option A: channels >= res_channels add zero
    v += to_float(static_cast<const T*>(p.residual)[res_pixel + k * p.res_stride_c]);
  return p.relu ? relu_keep_nan(v) : v;
}

// pre(x) for input channel c (absolute, not within the group).
__device__ __forceinline__ float prologue(const ConvParams& p, float x, int c) {
  const float a = p.in_scale ? __ldg(p.in_scale + c) : 1.f;
  const float b = p.in_shift ? __ldg(p.in_shift + c) : 0.f;
  return relu_keep_nan(a * x + b);
}

}  // namespace resnet_kernels
