// float16 instantiation of the Hopper wgmma kernel (one dtype per translation unit).
#include "kernels/wgmma_conv.cuh"

namespace resnet_kernels {
template cudaError_t launch_wgmma_conv<__half>(const ConvParams&, const ConvPlan&, cudaStream_t);
template cudaError_t wgmma_compiled<__half>(bool*);
}  // namespace resnet_kernels
