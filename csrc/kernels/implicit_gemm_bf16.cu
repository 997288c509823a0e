// bfloat16 instantiation of the tensor-core kernel (one dtype per translation unit).
#include "kernels/implicit_gemm.cuh"
#include "kernels/launch.h"

namespace resnet_kernels {
template cudaError_t launch_implicit_gemm<__nv_bfloat16>(const ConvParams&, const ConvPlan&, void*, cudaStream_t);
}  // namespace resnet_kernels
