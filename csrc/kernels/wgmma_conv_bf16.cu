// bfloat16 instantiation of the Hopper wgmma kernel (one dtype per translation unit).
#include "kernels/wgmma_conv.cuh"

namespace resnet_kernels {
template cudaError_t launch_wgmma_conv<__nv_bfloat16>(const ConvParams&, const ConvPlan&, cudaStream_t);
template cudaError_t wgmma_compiled<__nv_bfloat16>(bool*);
}  // namespace resnet_kernels
