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

// The residual and ReLU steps of the epilogue for the 8 consecutive output
// channels k..k+7 (8 | k) of one pixel, in place on v (already scaled and
// shifted). With vector_residual (host-checked, conv_plan.cu: res_stride_c ==
// 1, the residual and its pixel strides 16-byte / 8-element aligned, 8 |
// res_channels) the 8 residual values are one aligned 16-byte load and lie
// wholly below or at/above res_channels (option A); otherwise each is loaded
// on its own, as in epilogue<T>.
template <typename T>
__device__ __forceinline__ void residual_relu8(const ConvParams& p, float (&v)[8], int k, int64_t res_pixel,
                                               bool vector_residual) {
  if (p.residual) {
    const T* res = static_cast<const T*>(p.residual);
    if (vector_residual) {
      if (k < p.res_channels) {
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(res + res_pixel + k));
        const T* r = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += to_float(r[j]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (k + j < p.res_channels) v[j] += to_float(res[res_pixel + (k + j) * p.res_stride_c]);
    }
  }
  if (p.relu) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = relu_keep_nan(v[j]);
  }
}

// The whole epilogue of channels k..k+7 of one pixel, in place on v: the same
// arithmetic in the same order as epilogue<T> (an absent scale or shift is
// skipped, so the results are identical). Scale and shift are two float4 loads
// each: 8 | k and both 16-byte aligned (host-checked).
template <typename T>
__device__ __forceinline__ void epilogue8(const ConvParams& p, float (&v)[8], int k, int64_t res_pixel,
                                          bool vector_residual) {
  if (p.scale) {
    const float4 s0 = __ldg(reinterpret_cast<const float4*>(p.scale + k));
    const float4 s1 = __ldg(reinterpret_cast<const float4*>(p.scale + k + 4));
    const float s[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] *= s[j];
  }
  if (p.shift) {
    const float4 b0 = __ldg(reinterpret_cast<const float4*>(p.shift + k));
    const float4 b1 = __ldg(reinterpret_cast<const float4*>(p.shift + k + 4));
    const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] += b[j];
  }
  residual_relu8<T>(p, v, k, res_pixel, vector_residual);
}

// Scale and shift of the 8 channels k..k+7 (8 | k, both vectors 16-byte
// aligned: host-checked), loaded once for a thread that finishes the same
// channels of many pixels (wgmma_conv.cuh's staged epilogue). An absent vector
// leaves its entries unset: epilogue8 below skips it, as epilogue<T> does.
struct ChannelAffine8 {
  float scale[8], shift[8];
};

__device__ __forceinline__ ChannelAffine8 load_affine8(const ConvParams& p, int k) {
  ChannelAffine8 a;
  if (p.scale) {
    const float4 s0 = __ldg(reinterpret_cast<const float4*>(p.scale + k));
    const float4 s1 = __ldg(reinterpret_cast<const float4*>(p.scale + k + 4));
    a.scale[0] = s0.x, a.scale[1] = s0.y, a.scale[2] = s0.z, a.scale[3] = s0.w;
    a.scale[4] = s1.x, a.scale[5] = s1.y, a.scale[6] = s1.z, a.scale[7] = s1.w;
  }
  if (p.shift) {
    const float4 b0 = __ldg(reinterpret_cast<const float4*>(p.shift + k));
    const float4 b1 = __ldg(reinterpret_cast<const float4*>(p.shift + k + 4));
    a.shift[0] = b0.x, a.shift[1] = b0.y, a.shift[2] = b0.z, a.shift[3] = b0.w;
    a.shift[4] = b1.x, a.shift[5] = b1.y, a.shift[6] = b1.z, a.shift[7] = b1.w;
  }
  return a;
}

// epilogue8 with the scale and shift already loaded (load_affine8(p, k)):
// the same operations in the same order, so the same results.
template <typename T>
__device__ __forceinline__ void epilogue8(const ConvParams& p, float (&v)[8], int k, int64_t res_pixel,
                                          bool vector_residual, const ChannelAffine8& a) {
  if (p.scale) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] *= a.scale[j];
  }
  if (p.shift) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] += a.shift[j];
  }
  residual_relu8<T>(p, v, k, res_pixel, vector_residual);
}

// Eight values rounded to T, as one 16-byte vector (element j at byte 2j).
template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&v)[8]) {
  return make_uint4(pack2<T>(v[0], v[1]), pack2<T>(v[2], v[3]), pack2<T>(v[4], v[5]), pack2<T>(v[6], v[7]));
}

// pre(x) for input channel c (absolute, not within the group).
__device__ __forceinline__ float prologue(const ConvParams& p, float x, int c) {
  const float a = p.in_scale ? __ldg(p.in_scale + c) : 1.f;
  const float b = p.in_shift ? __ldg(p.in_shift + c) : 0.f;
  return relu_keep_nan(a * x + b);
}

// ---- The staged 16-byte epilogue's shared-memory tile (both tensor-core kernels).
//
// Element offset of (row, col) in the BM x BN fp32 staging tile. Rows are BN
// floats (BN a multiple of 32: every row starts on bank 0); the 16-byte chunk
// index col/4 is XOR-ed with 2*(row%4). The XOR touches bits 1-2 of the chunk
// index only, so the two chunks of an aligned 8-column group stay adjacent
// (2i, 2i+1 -> 2(i^x), 2(i^x)+1) and inside the row's aligned group of 8
// chunks (128 bytes). Why it is conflict-free: at the stores in each kernel
// and in read_staged8.
template <int BN>
__device__ __forceinline__ int staging_offset(int row, int col) {
  static_assert(BN % 32 == 0, "rows start on bank 0 and hold whole 8-chunk groups");
  return row * BN + ((((col >> 2) ^ ((row & 3) << 1))) << 2) + (col & 3);
}

// v = the 8 staged fp32 values of columns 8t .. 8t+7 of tile row `row`. A
// 128-bit shared access is served per quarter-warp: 8 consecutive threads, all
// in one row (the kernels give a row 8 | GROUPS threads), t % 8 = 0..7.
// Reading chunk 2t first everywhere would hit bank groups 2((t^x) % 4), each
// twice: a 2-way conflict. Threads with bit 2 of t set read their odd chunk
// first: first read chunk 2t + b (b = (t >> 2) & 1) -> bank group
// 2((t % 4) ^ x) + b, distinct over the 8 threads; the second read likewise.
template <int BN>
__device__ __forceinline__ void read_staged8(const float* staged, int row, int t, float (&v)[8]) {
  const int b = (t >> 2) & 1;
  const float4 first = *reinterpret_cast<const float4*>(staged + staging_offset<BN>(row, 8 * t + 4 * b));
  const float4 second = *reinterpret_cast<const float4*>(staged + staging_offset<BN>(row, 8 * t + 4 - 4 * b));
  const float4 lo = b ? second : first, hi = b ? first : second;
  v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
  v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

// The read-out of a staged BM x BN tile, the same in both kernels: this
// thread owns the 8-column group t = tid % (BN/8) (the same in every round:
// THREADS is a multiple of BN/8) of rows (it*THREADS + tid) / (BN/8), i.e.
// THREADS / (BN/8) rows per round; per row it reads the 8 staged values
// (read_staged8), lets `finish(v, m)` turn them into outputs of pixel m
// (residual, ReLU, and whatever the staging left out) and stores them as one
// 16-byte store at y[m][k .. k+7]. Rows past M end the walk (rows only grow).
template <typename T, int BM, int BN, int THREADS, typename Finish>
__device__ __forceinline__ void store_staged_rows(const float* staged, int t, int k, int64_t m0, int64_t M,
                                                  int64_t K, T* y, Finish finish) {
  constexpr int GROUPS = BN / 8;
  static_assert(THREADS % GROUPS == 0 && (BM * GROUPS) % THREADS == 0, "whole rows per round");
#pragma unroll
  for (int it = 0; it < BM * GROUPS / THREADS; ++it) {
    const int row = (it * THREADS + int(threadIdx.x)) / GROUPS;
    const int64_t m = m0 + row;
    if (m >= M) break;
    float v[8];
    read_staged8<BN>(staged, row, t, v);
    finish(v, m);
    *reinterpret_cast<uint4*>(y + m * K + k) = pack8<T>(v);
  }
}

}  // namespace resnet_kernels
