// Tensor maps of the wgmma kernel's TMA loads, and the TMA choice (tma_map.h,
// launch.h: WgmmaLoads). Host code only.
#include <cudaTypedefs.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "kernels/launch.h"
#include "kernels/tma_map.h"

namespace resnet_kernels {
namespace {

constexpr const char* kTmaEnvVar = "RESNET_KERNELS_CUDA_TMA";
constexpr const char* kPersistentEnvVar = "RESNET_KERNELS_CUDA_PERSISTENT";
constexpr cuuint32_t kBoxInner = 64;  // elements: one 128-byte swizzle line (the kernel's BK)

// The position of environment variable `name`'s value in `values` (unset or
// empty: 0, the default). Any other value: 0 as well, and *message =
// "NAME='value' " + rest (thread-local storage, valid until the next call
// from this thread); otherwise *message is left alone.
int env_choice(const char* name, std::initializer_list<const char*> values, const char* rest,
               const char** message) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return 0;
  int i = 0;
  for (const char* allowed : values) {
    if (std::strcmp(value, allowed) == 0) return i;
    ++i;
  }
  thread_local std::string text;
  text = std::string(name) + "='" + value + "' " + rest;
  *message = text.c_str();
  return 0;
}

// The driver function `name` (CUDA 12.0 ABI), or nullptr.
void* find_driver_function(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
  const cudaError_t err = cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t err = cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &found);
#endif
  if (err != cudaSuccess || found != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();  // not sticky; keep it from surfacing at the next launch check
    return nullptr;
  }
  return fn;
}

// Looked up once each (thread-safe static initialisation).
PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static const auto fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(find_driver_function("cuTensorMapEncodeTiled"));
  return fn;
}
PFN_cuTensorMapEncodeIm2col_v12000 im2col_encoder() {
  static const auto fn =
      reinterpret_cast<PFN_cuTensorMapEncodeIm2col_v12000>(find_driver_function("cuTensorMapEncodeIm2col"));
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

// Along W the box runs from -pad_w (output column 0's top-left tap) to
// W + pad_w - (S-1)*dil_w exclusive (the last column whose filter still ends
// inside the padded row), i.e. ceil((W + 2*pad_w - (S-1)*dil_w) / stride_w) =
// Q positions at the traversal stride. H alike.
void im2col_box_corners(const ConvParams& p, int (&lower)[2], int (&upper)[2]) {
  lower[0] = -p.pad_w;
  lower[1] = -p.pad_h;
  upper[0] = p.pad_w - (p.S - 1) * p.dil_w;
  upper[1] = p.pad_h - (p.R - 1) * p.dil_h;
}

bool tma_encoder_available() { return encoder() != nullptr && im2col_encoder() != nullptr; }

const char* tma_from_env(TmaChoice* choice) {
  const char* message = nullptr;
  const int i = env_choice(kTmaEnvVar, {"1", "weights", "0"},
                           "is not a TMA choice: use 1 (or leave it unset) for TMA loads in the wgmma kernel where they "
                           "apply, weights for the weights only, 0 for cp.async loads only",
                           &message);
  *choice = i == 1 ? TmaChoice::kWeights : i == 2 ? TmaChoice::kNone : TmaChoice::kAll;
  return message;
}

WgmmaLoads wgmma_loads(const ConvParams& p, TmaChoice choice) {
  if (choice == TmaChoice::kNone || !tma_encoder_available()) return WgmmaLoads::kCpAsync;
  if (choice == TmaChoice::kWeights) return WgmmaLoads::kTmaB;
  if (tma_gemm_input_ok(p)) return WgmmaLoads::kTmaAB;
  if (tma_im2col_input_ok(p)) return WgmmaLoads::kTmaIm2col;
  return WgmmaLoads::kTmaB;
}

bool tma_im2col_input_ok(const ConvParams& p) {
  if (p.c_per_group() % 64 != 0 || p.has_prologue()) return false;
  if (p.stride_h > 8 || p.stride_w > 8) return false;  // the map's traversal strides
  // Tap offsets are 16-bit operands of the copy instruction.
  if ((p.R - 1) * int64_t(p.dil_h) > 0xffff || (p.S - 1) * int64_t(p.dil_w) > 0xffff) return false;
  int lower[2], upper[2];
  im2col_box_corners(p, lower, upper);
  for (int i = 0; i < 2; ++i)  // rank-4 corners are signed 8-bit
    if (lower[i] < -128 || lower[i] > 127 || upper[i] < -128 || upper[i] > 127) return false;
  return true;
}

const char* persistent_from_env(bool* persistent) {
  const char* message = nullptr;
  *persistent = env_choice(kPersistentEnvVar, {"1", "0"},
                           "is not a choice: use 1 (or leave it unset) for the persistent warp-specialised wgmma "
                           "kernel where it applies, 0 for the one-tile-per-CTA wgmma kernel everywhere",
                           &message) != 1;
  return message;
}

bool tma_epilogue_ok(const ConvParams& p) {
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  if (p.k_per_group() % 8 != 0 || p.pixels() > INT_MAX - 128) return false;
  if (!aligned(p.y) || !aligned(p.scale) || !aligned(p.shift)) return false;  // nullptr is aligned
  if (p.residual == nullptr) return true;
  const int64_t k = p.K;
  return aligned(p.residual) && p.res_channels == p.K && p.res_stride_c == 1 && p.res_stride_w == k &&
         p.res_stride_h == k * p.Q && p.res_stride_n == k * p.Q * p.P;
}

bool wgmma_persistent(const ConvParams& p, WgmmaLoads loads, bool allowed) {
  return allowed && both_operands_by_tma(loads) && tma_epilogue_ok(p);
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

cudaError_t encode_im2col_input_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map) {
  const PFN_cuTensorMapEncodeIm2col_v12000 encode = im2col_encoder();
  if (encode == nullptr || !tma_im2col_input_ok(p)) return cudaErrorInvalidValue;
  // NHWC x as (C, W, H, N), packed.
  const cuuint64_t c = cuuint64_t(p.C), w = cuuint64_t(p.W), h = cuuint64_t(p.H);
  const cuuint64_t dims[4] = {c, w, h, cuuint64_t(p.N)};
  const cuuint64_t strides[3] = {c * 2, w * c * 2, h * w * c * 2};
  const cuuint32_t element_strides[4] = {1, cuuint32_t(p.stride_w), cuuint32_t(p.stride_h), 1};
  int lower[2], upper[2];
  im2col_box_corners(p, lower, upper);
  const CUresult res = encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                              const_cast<void*>(p.x), dims, strides, lower, upper, kBoxInner, cuuint32_t(box_rows),
                              element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return res == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
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

cudaError_t encode_output_map(const ConvParams& p, bool bf16, const void* base, int box_rows, CUtensorMap* map) {
  if (!tma_epilogue_ok(p)) return cudaErrorInvalidValue;
  // Pixel m starts at m * K elements, group g's channels at g * Kg within it
  // (byte strides Kg * 2 and K * 2, multiples of 16: 8 | Kg).
  const cuuint64_t kg = cuuint64_t(p.k_per_group());
  const cuuint64_t dims[3] = {kg, cuuint64_t(p.groups), cuuint64_t(p.pixels())};
  const cuuint64_t strides[2] = {kg * 2, cuuint64_t(p.K) * 2};
  const cuuint32_t box[3] = {kBoxInner, 1, cuuint32_t(box_rows)};
  return encode3d(bf16, base, dims, strides, box, map);
}

}  // namespace resnet_kernels
