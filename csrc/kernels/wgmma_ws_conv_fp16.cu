// float16 instantiation of the persistent warp-specialised wgmma kernel (one dtype per translation unit).
#include "kernels/wgmma_ws_conv.cuh"

namespace resnet_kernels {
template cudaError_t launch_wgmma_ws_conv<__half>(const ConvParams&, const ConvPlan&, cudaStream_t);
}  // namespace resnet_kernels
