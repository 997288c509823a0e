// Choice between the tensor-core kernels (mma.sync, wgmma: select_kernel in
// wgmma_select.cu) and the direct kernel.
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
cudaError_t launch_conv_bn_act(const ConvParams& p, const ConvPlan& plan, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream) {
  if (!plan_fits(p, plan, workspace, workspace_bytes)) return cudaErrorInvalidValue;
  if (!plan.tensor_cores) return launch_direct_conv<T>(p, stream);
  if (plan.kernel != KernelChoice::kMma)
    return plan.persistent ? launch_wgmma_ws_conv<T>(p, plan, stream) : launch_wgmma_conv<T>(p, plan, stream);
  const cudaError_t err = launch_implicit_gemm<T>(p, plan, workspace, stream);
  if (err != cudaSuccess || plan.split == 1) return err;
  return launch_splitk_reduce<T>(p, plan, static_cast<const float*>(workspace), stream);
}

template <typename T>
cudaError_t launch_conv_bn_act(const ConvParams& p, cudaStream_t stream) {
  int device = 0, num_sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = multiprocessor_count(device, &num_sms);
  ConvPlan plan{};
  if (err == cudaSuccess) err = plan_conv(p, device, num_sms, /*forced_split=*/1, &plan);
  if (err != cudaSuccess) return err;
  return launch_conv_bn_act<T>(p, plan, nullptr, 0, stream);
}

template cudaError_t launch_conv_bn_act<__half>(const ConvParams&, cudaStream_t);
template cudaError_t launch_conv_bn_act<__nv_bfloat16>(const ConvParams&, cudaStream_t);
template cudaError_t launch_conv_bn_act<__half>(const ConvParams&, const ConvPlan&, void*, size_t, cudaStream_t);
template cudaError_t launch_conv_bn_act<__nv_bfloat16>(const ConvParams&, const ConvPlan&, void*, size_t,
                                                       cudaStream_t);

}  // namespace resnet_kernels
