// Choice between the mma.sync and the wgmma tensor-core kernels (see launch.h):
// the environment variable, the availability of wgmma, the tile heuristic.
// Host code only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/launch.h"
#include "kernels/tma_map.h"
#include "kernels/wgmma_config.h"

namespace resnet_kernels {
namespace {

constexpr const char* kEnvVar = "RESNET_KERNELS_CUDA_KERNEL";
constexpr const char* kAllowed = "mma (the default), wgmma, wgmma_n64, wgmma_n128, wgmma_n256";

// Per-device cache of wgmma availability: 0 not queried yet, 1 no, 2 yes.
// Queries are idempotent, so two threads racing on the first one is harmless.
constexpr int kMaxDevices = 64;
std::atomic<int> available_cache[kMaxDevices];

// Relative time of one 128x256 CTA against one 128x128 CTA in the wave model
// of select_kernel: twice the MMAs, but fewer shared-memory operand reads per
// MMA (each warpgroup reads its 64 A rows and all BN B rows per k16 step:
// 12 KB per 128x128x16 MACs for the 128x128 tile, 10 KB for 128x256). An
// estimate, to be replaced by a measured ratio once the kernel has run on an H100.
constexpr double kN256CtaCost = 1.8;

// With its A operand gathered by cp.async, wgmma only raises the MMA ceiling
// (~560 TFLOP/s for mma.sync against ~790 measured for wgmma on an H100), so
// "wgmma" takes those calls only where they are compute-bound under the
// mma.sync ceiling at 3.0 TB/s: at least 560/3.0 ~ 187 FLOP per byte of their
// one-pass traffic. Memory-bound calls with a gathered A keep the mma.sync kernel.
// Calls whose operands both come by TMA (kTmaAB: 1x1 stride-1 GEMMs, ResNet-50's
// 1x1s of stages 1-3 at 28-171 FLOP/byte; kTmaIm2col: e.g. the strided 1x1
// downsamples at 85-332 FLOP/byte) take wgmma whatever their intensity: no
// thread issues a load, the main loop is ~46 SASS instructions per warp per
// 64-deep k tile against the mma.sync kernel's 104-128, and where the epilogue
// admits TMA too the persistent kernel streams the next tile's operands and
// residual while this tile's output is stored -- which of the two kernels
// streams HBM better is what the "cuda" and "cuda-wgmma" benchmark providers
// measure side by side.
constexpr double kMinFlopPerByte = 560e12 / 3.0e12;

// Arithmetic intensity of call p: MMA FLOPs over the bytes it must move at
// least (x, w, y and a residual of y's size, 2 bytes each).
double flop_per_byte(const ConvParams& p) {
  const double flops = 2.0 * double(p.pixels()) * p.K * p.gemm_k();
  const double elements = double(p.N) * p.H * p.W * p.C + double(p.K) * p.gemm_k() +
                          double(p.pixels()) * p.K * (p.residual != nullptr ? 2 : 1);
  return flops / (2.0 * elements);
}

int64_t ctas(const ConvParams& p, int bm, int bn) {
  return (p.pixels() + bm - 1) / bm * ((p.k_per_group() + bn - 1) / bn) * p.groups;
}

// Compute capability 9.0 and sm_90a images of both dtypes' kernels on `device`.
cudaError_t query_wgmma(int device, bool* available) {
  *available = false;
  if (device >= 0 && device < kMaxDevices) {
    const int cached = available_cache[device].load(std::memory_order_relaxed);
    if (cached != 0) {
      *available = cached == 2;
      return cudaSuccess;
    }
  }
  int major = 0, minor = 0, current = 0;
  cudaError_t err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  if (err != cudaSuccess) return err;
  bool yes = major == 9 && minor == 0;  // sm_90a code runs on compute capability 9.0 only
  if (yes) {
    // wgmma_compiled asks about the current device's images.
    err = cudaGetDevice(&current);
    if (err == cudaSuccess && current != device) err = cudaSetDevice(device);
    bool half_ok = false, bf16_ok = false;
    if (err == cudaSuccess) err = wgmma_compiled<__half>(&half_ok);
    if (err == cudaSuccess) err = wgmma_compiled<__nv_bfloat16>(&bf16_ok);
    if (current != device) {
      const cudaError_t restore = cudaSetDevice(current);
      if (err == cudaSuccess) err = restore;
    }
    if (err != cudaSuccess) return err;
    yes = half_ok && bf16_ok;
  }
  if (device >= 0 && device < kMaxDevices) available_cache[device].store(yes ? 2 : 1, std::memory_order_relaxed);
  *available = yes;
  return cudaSuccess;
}

}  // namespace

KernelChoice kernel_choice() {
  const char* value = std::getenv(kEnvVar);
  if (value == nullptr || *value == '\0' || std::strcmp(value, "mma") == 0) return KernelChoice::kMma;
  if (std::strcmp(value, "wgmma") == 0) return KernelChoice::kWgmma;
  if (std::strcmp(value, "wgmma_n64") == 0) return KernelChoice::kWgmmaN64;
  if (std::strcmp(value, "wgmma_n128") == 0) return KernelChoice::kWgmmaN128;
  if (std::strcmp(value, "wgmma_n256") == 0) return KernelChoice::kWgmmaN256;
  return KernelChoice::kInvalid;
}

const char* kernel_choice_error(int device) {
  thread_local std::string message;
  const KernelChoice choice = kernel_choice();
  if (choice == KernelChoice::kInvalid) {
    message = std::string(kEnvVar) + "='" + std::getenv(kEnvVar) + "' is not a kernel choice; use one of " + kAllowed;
    return message.c_str();
  }
  const bool forced_tile = choice == KernelChoice::kWgmmaN64 || choice == KernelChoice::kWgmmaN128 ||
                           choice == KernelChoice::kWgmmaN256;
  if (forced_tile && !wgmma_available(device)) {
    message = std::string(kEnvVar) + "=" + std::getenv(kEnvVar) + " needs the wgmma kernel, which device " +
              std::to_string(device) +
              " cannot run: it needs compute capability 9.0 (H100/H200) and an extension built with sm_90a "
              "code (TORCH_CUDA_ARCH_LIST containing 9.0a); use mma or wgmma (which falls back to mma)";
    return message.c_str();
  }
  return nullptr;
}

bool wgmma_available(int device) {
  bool available = false;
  if (query_wgmma(device, &available) != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so the next launch's check does not see it
    return false;
  }
  return available;
}

cudaError_t select_kernel(const ConvParams& p, int device, int num_sms, WgmmaLoads loads, KernelChoice* kernel) {
  *kernel = KernelChoice::kMma;
  const KernelChoice choice = kernel_choice();
  if (choice == KernelChoice::kInvalid) return cudaErrorInvalidValue;
  if (choice == KernelChoice::kMma) return cudaSuccess;
  bool available = false;
  const cudaError_t err = query_wgmma(device, &available);
  if (err != cudaSuccess) return err;
  if (choice != KernelChoice::kWgmma) {  // a forced tile
    if (!available) return cudaErrorInvalidValue;
    *kernel = choice;
    return cudaSuccess;
  }
  // "wgmma": compute-bound calls (kMinFlopPerByte) and calls with both
  // operands loaded by TMA (see there) whose wgmma grid gives every SM at least one CTA (smaller grids keep the mma.sync kernel's 64x64
  // tile, which spreads them, with split-K where that pays), either
  // - K/groups <= 64: the 128x64 tile (no column wasted on 64 channels; e.g.
  //   ResNet-50 layer1's 3x3 and the stem padded to C = 8, at ~260-290
  //   FLOP/byte), or
  // - K/groups >= 128, where the mma.sync kernel would take its own 128x128
  //   tile: 128x128 or 128x256 (below).
  // 64 < K/groups < 128 stays on mma.sync (its 64-wide tile wastes less there).
  if (!available || (flop_per_byte(p) < kMinFlopPerByte && !both_operands_by_tma(loads))) return cudaSuccess;
  const int kg = p.k_per_group();
  if (kg <= WgmmaTileN64::BN) {
    if (ctas(p, WgmmaTileN64::BM, WgmmaTileN64::BN) >= num_sms) *kernel = KernelChoice::kWgmmaN64;
    return cudaSuccess;
  }
  const int64_t ctas_n128 = ctas(p, WgmmaTileN128::BM, WgmmaTileN128::BN);
  if (kg < 128 || ctas_n128 < num_sms) return cudaSuccess;
  // Tile by waves (all CTAs of a wave take about as long, one CTA per SM for
  // either tile's shared memory): 128x256 when its waves, each kN256CtaCost
  // times as long, finish first. E.g. ResNet-50 at batch 256 on 132 SMs:
  // layer3 3x3 (M = 50176, K = 256): 6 waves of 128x128 vs 3 of 128x256
  // (5.4 < 6): 128x256; layer4 3x3 (M = 12544, K = 512): 3 waves vs 2
  // (3.6 > 3): 128x128.
  const int64_t ctas_n256 = ctas(p, WgmmaTileN256::BM, WgmmaTileN256::BN);
  const int64_t waves_n128 = (ctas_n128 + num_sms - 1) / num_sms;
  const int64_t waves_n256 = (ctas_n256 + num_sms - 1) / num_sms;
  const bool wide = kg >= 256 && kN256CtaCost * double(waves_n256) < double(waves_n128);
  *kernel = wide ? KernelChoice::kWgmmaN256 : KernelChoice::kWgmmaN128;
  return cudaSuccess;
}

}  // namespace resnet_kernels
