// Second kernel of a split-K launch: sums the fp32 partials of the split
// implicit GEMM and applies the fused epilogue.
//
//   y[m][k] = epilogue(sum_{z = 0..split-1} partials[z][m][k])
//
// partials is the [split][M][K] workspace written by implicit_gemm_kernel
// (every (z, m, k) with m < M, k < K is written by exactly one CTA of split z,
// so nothing of the workspace's previous contents is read). The sum runs over
// z in ascending order for every element whatever the thread mapping, so the
// result is bitwise reproducible (no atomics anywhere). Stream order makes
// the GEMM's writes visible here; nothing else is needed.
//
// Each thread owns VEC consecutive channels of one pixel (grid-stride loop
// over the M x K/VEC chunks, k fastest, so a warp reads 32 * VEC * 4
// contiguous bytes of each split and writes 32 * VEC * sizeof(T) of y):
//   VEC = 8: two 16-byte loads per split, epilogue8 (16-byte residual loads
//            where allowed), one 16-byte store. Host: 8 | K, y, scale and
//            shift 16-byte aligned (vector_output in the plan).
//   VEC = 2: 8-byte loads, epilogue<T> per element, one 32-bit store (K is
//            even for every call the tensor-core path takes).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/epilogue.cuh"
#include "kernels/launch.h"

namespace resnet_kernels {

template <typename T, int VEC>
__global__ void __launch_bounds__(128) splitk_reduce_kernel(const ConvParams p, const float* __restrict__ partials,
                                                            int split, bool vector_residual) {
  static_assert(VEC == 8 || VEC == 2, "16-byte or 32-bit output stores");
  const int64_t M = p.pixels();
  const int64_t slice = M * p.K;  // floats per split
  const int groups_per_row = p.K / VEC;
  const int64_t chunks = M * groups_per_row;
  T* y = static_cast<T*>(p.y);
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks; c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = c / groups_per_row;
    const int k = int(c - m * groups_per_row) * VEC;
    const float* src = partials + m * p.K + k;
    float v[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = 0.f;
    // The loads of 4 splits are independent of the running sum, so the
    // unrolled body issues them together; the adds stay in z order.
#pragma unroll 4
    for (int z = 0; z < split; ++z) {
      const float* s = src + z * slice;
      if constexpr (VEC == 8) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(s));
        const float4 b = __ldg(reinterpret_cast<const float4*>(s + 4));
        v[0] += a.x, v[1] += a.y, v[2] += a.z, v[3] += a.w;
        v[4] += b.x, v[5] += b.y, v[6] += b.z, v[7] += b.w;
      } else {
        const float2 a = __ldg(reinterpret_cast<const float2*>(s));
        v[0] += a.x, v[1] += a.y;
      }
    }
    const int64_t res_pixel = p.residual ? residual_pixel_offset(p, m) : 0;
    if constexpr (VEC == 8) {
      epilogue8<T>(p, v, k, res_pixel, vector_residual);
      *reinterpret_cast<uint4*>(y + m * p.K + k) = pack8<T>(v);
    } else {
      const float v0 = epilogue<T>(p, v[0], k, res_pixel);
      const float v1 = epilogue<T>(p, v[1], k + 1, res_pixel);
      *reinterpret_cast<uint32_t*>(y + m * p.K + k) = pack2<T>(v0, v1);
    }
  }
}

template <typename T>
cudaError_t launch_splitk_reduce(const ConvParams& p, const ConvPlan& plan, const float* partials,
                                 cudaStream_t stream) {
  constexpr int threads = 128;  // small blocks: at batch 1 the whole reduce is a few thousand chunks
  constexpr int64_t max_blocks = 1 << 20;  // the grid-stride loop covers the rest
  const int vec = plan.vector_output ? 8 : 2;
  const int64_t chunks = p.pixels() * (p.K / vec);
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min((chunks + threads - 1) / threads, max_blocks)));
  if (plan.vector_output)
    splitk_reduce_kernel<T, 8><<<blocks, threads, 0, stream>>>(p, partials, plan.split, plan.vector_residual);
  else
    splitk_reduce_kernel<T, 2><<<blocks, threads, 0, stream>>>(p, partials, plan.split, false);
  return cudaGetLastError();
}

template cudaError_t launch_splitk_reduce<__half>(const ConvParams&, const ConvPlan&, const float*, cudaStream_t);
template cudaError_t launch_splitk_reduce<__nv_bfloat16>(const ConvParams&, const ConvPlan&, const float*,
                                                         cudaStream_t);

}  // namespace resnet_kernels
