// Choice between the tensor-core and the direct kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/tile_config.h"
#include "kernels/launch.h"

namespace resnet_kernels {

bool implicit_gemm_supports(const ConvParams& p) {
  const auto aligned = [](const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; };
  // Grid limits, checked for the small tile (the one with more CTAs).
  const int64_t m_tiles = (p.pixels() + SmallTile::BM - 1) / SmallTile::BM;
  const int64_t n_tiles = int64_t(p.k_per_group() + SmallTile::BN - 1) / SmallTile::BN * p.groups;
  return p.c_per_group() % 8 == 0 && p.k_per_group() % 2 == 0 &&  // 16-byte chunks, paired stores
         aligned(p.x, 16) && aligned(p.w, 16) && aligned(p.y, 4) &&  // cp.async and 32-bit stores
         m_tiles <= 0x7fffffff && n_tiles <= 65535;
}

template <typename T>
cudaError_t launch_conv_bn_act(const ConvParams& p, cudaStream_t stream) {
  if (!implicit_gemm_supports(p)) return launch_direct_conv<T>(p, stream);
  int device = 0, num_sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  return launch_implicit_gemm<T>(p, num_sms, stream);
}

template cudaError_t launch_conv_bn_act<__half>(const ConvParams&, cudaStream_t);
template cudaError_t launch_conv_bn_act<__nv_bfloat16>(const ConvParams&, cudaStream_t);

}  // namespace resnet_kernels
