// Direct convolution: one thread per output element, fp32 accumulation.
//
// The correct-for-everything path, used where the tensor-core kernel does not
// apply (see implicit_gemm_supports): C/groups not a multiple of 8 (the C=3
// stem, depthwise, ResNeXt 32x4d's first stage with 4 channels per group), odd
// K/groups, misaligned buffers. It reads x and w straight from global memory
// (L1/L2 cached) and is slow, but shares the fused prologue and epilogue.
// The cuda backend (resnet_kernels/cuda_conv.py) pads or merges narrow groups
// before calling the op, so through it only odd K/groups (that merging cannot
// make even) and misaligned inputs still land here.
#include <algorithm>

#include "kernels/epilogue.cuh"
#include "kernels/launch.h"

namespace resnet_kernels {

template <typename T>
__global__ void direct_conv_kernel(const ConvParams p) {
  const T* x = static_cast<const T*>(p.x);
  const T* w = static_cast<const T*>(p.w);
  T* y = static_cast<T*>(p.y);
  const int cg = p.c_per_group(), kg = p.k_per_group();
  const int64_t total = p.pixels() * p.K;
  const int64_t pq = int64_t(p.P) * p.Q;
  // Grid-stride loop over NHWC output index (m, k) = (idx / K, idx % K): k is
  // fastest, so neighbouring threads write neighbouring addresses.
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int k = int(idx % p.K);
    const int64_t m = idx / p.K;
    const int64_t n = m / pq;
    const int op = int((m - n * pq) / p.Q);
    const int oq = int(m - n * pq - int64_t(op) * p.Q);
    const int c0 = (k / kg) * cg;  // first input channel of k's group
    float acc = 0.f;
    for (int r = 0; r < p.R; ++r) {
      const int h = op * p.stride_h - p.pad_h + r * p.dil_h;
      if (h < 0 || h >= p.H) continue;  // zero padding: the tap adds nothing
      for (int s = 0; s < p.S; ++s) {
        const int iw = oq * p.stride_w - p.pad_w + s * p.dil_w;
        if (iw < 0 || iw >= p.W) continue;
        const T* xs = x + ((n * p.H + h) * p.W + iw) * p.C + c0;
        const T* ws = w + ((int64_t(k) * p.R + r) * p.S + s) * cg;  // KRSC
        for (int c = 0; c < cg; ++c) {
          const float xv = to_float(xs[c]);
          acc += (p.has_prologue() ? prologue(p, xv, c0 + c) : xv) * to_float(ws[c]);
        }
      }
    }
    const int64_t res_pixel = p.residual ? residual_pixel_offset(p, m) : 0;
    y[idx] = from_float<T>(epilogue<T>(p, acc, k, res_pixel));
  }
}

template <typename T>
cudaError_t launch_direct_conv(const ConvParams& p, cudaStream_t stream) {
  constexpr int threads = 256;
  constexpr int64_t max_blocks = 1 << 20;  // the grid-stride loop covers the rest
  const int64_t total = p.pixels() * p.K;
  const int64_t blocks = std::min((total + threads - 1) / threads, max_blocks);
  direct_conv_kernel<T><<<unsigned(blocks), threads, 0, stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t launch_direct_conv<__half>(const ConvParams&, cudaStream_t);
template cudaError_t launch_direct_conv<__nv_bfloat16>(const ConvParams&, cudaStream_t);

}  // namespace resnet_kernels
