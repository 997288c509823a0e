// Host launchers of the fused conv. They take raw pointers (ConvParams) and a
// stream, launch on that stream and return the first CUDA error (of a
// cudaFuncSetAttribute or of the launch itself, via cudaGetLastError), so the
// caller checks every launch: C10_CUDA_CHECK in the torch op, a CHECK macro in
// the ctest. T is __half or __nv_bfloat16.
#pragma once

#include <cuda_runtime.h>

#include "kernels/conv_params.h"

namespace resnet_kernels {

// Whether the tensor-core kernel handles this call: 8 | C/groups (16-byte
// chunks of one tap), 2 | K/groups (paired output stores), 16-byte aligned
// x and w, and a grid within limits. Everything else goes to the direct kernel.
bool implicit_gemm_supports(const ConvParams& p);

// Implicit-GEMM kernel (mma.sync, cp.async pipeline); requires implicit_gemm_supports.
template <typename T>
cudaError_t launch_implicit_gemm(const ConvParams& p, int num_sms, cudaStream_t stream);

// Direct convolution, one thread per output element: any shape, slow.
template <typename T>
cudaError_t launch_direct_conv(const ConvParams& p, cudaStream_t stream);

// The entry point: the tensor-core kernel where supported, else the direct one.
template <typename T>
cudaError_t launch_conv_bn_act(const ConvParams& p, cudaStream_t stream);

}  // namespace resnet_kernels
