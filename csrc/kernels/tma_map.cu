// Tensor maps of the wgmma kernel's TMA loads, and the TMA choice (tma_map.h,
// launch.h: WgmmaLoads). Host code only.
#include <cudaTypedefs.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/launch.h"
#include "kernels/tma_map.h"

namespace resnet_kernels {
namespace {

constexpr const char* kTmaEnvVar = "RESNET_KERNELS_CUDA_TMA";
constexpr cuuint32_t kBoxInner = 64;  // elements: one 128-byte swizzle line (the kernel's BK)

PFN_cuTensorMapEncodeTiled_v12000 find_encoder() {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
  const cudaError_t err =
      cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
  if (err != cudaSuccess || found != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();  // not sticky; keep it from surfacing at the next launch check
    return nullptr;
  }
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
}

// Looked up once (thread-safe static initialisation).
PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = find_encoder();
  return fn;
}

// A rank-3 tiled map with the 128-byte swizzle and zero fill outside the
// tensor. dims in elements (innermost first), strides in bytes of dims 1 and
// 2 (dim 0 is contiguous), box in elements.
cudaError_t encode3d(bool bf16, const void* base, const cuuint64_t (&dims)[3], const cuuint64_t (&strides)[2],
                     const cuuint32_t (&box)[3], CUtensorMap* map) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encoder();
  if (encode == nullptr) return cudaErrorInvalidValue;
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult res = encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
                              const_cast<void*>(base), dims, strides, box, element_strides,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return res == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace

bool tma_encoder_available() { return encoder() != nullptr; }

const char* tma_from_env(bool* use_tma) {
  *use_tma = true;
  const char* value = std::getenv(kTmaEnvVar);
  if (value == nullptr || *value == '\0' || std::strcmp(value, "1") == 0) return nullptr;
  if (std::strcmp(value, "0") == 0) {
    *use_tma = false;
    return nullptr;
  }
  thread_local std::string message;
  message = std::string(kTmaEnvVar) + "='" + value +
            "' is not a TMA choice: use 1 (or leave it unset) for TMA loads in the wgmma kernel where they "
            "apply, 0 for cp.async loads only";
  return message.c_str();
}

bool tma_gemm_input_ok(const ConvParams& p) {
  return p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0 &&
         !p.has_prologue() && p.pixels() <= INT_MAX;
}

cudaError_t encode_weight_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map) {
  // Row g*Kg + n of the KRSC weights holds the gemm_k reduction values of
  // output channel n of group g: gemm_k * 2 bytes per row (a multiple of 16:
  // 8 | Cg), Kg rows per group.
  const cuuint64_t gemm_k = cuuint64_t(p.gemm_k()), kg = cuuint64_t(p.k_per_group());
  const cuuint64_t dims[3] = {gemm_k, kg, cuuint64_t(p.groups)};
  const cuuint64_t strides[2] = {gemm_k * 2, kg * gemm_k * 2};
  const cuuint32_t box[3] = {kBoxInner, cuuint32_t(box_rows), 1};
  return encode3d(bf16, p.w, dims, strides, box, map);
}

cudaError_t encode_gemm_input_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map) {
  if (!tma_gemm_input_ok(p)) return cudaErrorInvalidValue;
  // Pixel m of NHWC x starts at m * C elements; group g's channels at g * Cg
  // within it (byte strides C * 2 and Cg * 2, multiples of 16: 8 | Cg).
  const cuuint64_t cg = cuuint64_t(p.c_per_group());
  const cuuint64_t dims[3] = {cg, cuuint64_t(p.groups), cuuint64_t(p.pixels())};
  const cuuint64_t strides[2] = {cg * 2, cuuint64_t(p.C) * 2};
  const cuuint32_t box[3] = {kBoxInner, 1, cuuint32_t(box_rows)};
  return encode3d(bf16, p.x, dims, strides, box, map);
}

}  // namespace resnet_kernels
