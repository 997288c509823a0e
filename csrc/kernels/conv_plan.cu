// Planning a call (launch.h: ConvPlan): kernel, tile, split-K, epilogue
// vector paths, workspace size. Host code only.
//
// Split-K heuristic (mma.sync kernel; numbers for an H100, 132 SMs):
//
//   ctas    = CTAs of the chosen tile (M tiles x N tiles x groups)
//   k_tiles = ceil(R*S*C/groups / 32)
//   split   = min(ceil(num_sms / ctas), k_tiles / 4, 16)
//             if 2 * ctas <= num_sms and k_tiles >= 8, else 1;
//   split   = 1 if that shortens a CTA's k loop by fewer than 8 k tiles
//             (k_tiles - ceil(k_tiles / split) < 8).
//
// - Only grids that fill at most half the SMs split: above that, a split
//   adds a second kernel and the workspace round trip to win less than 2x in
//   parallelism. The 128x128 tile is only chosen when its grid fills every
//   SM, so splits always use the 64x64 tile.
// - ceil(num_sms / ctas) splits bring the grid to about one CTA per SM
//   (ctas * split < num_sms + ctas <= 1.5 * num_sms). More would only queue.
// - At least 4 k tiles per split: a 64x64 CTA loads 8 KB of A and B per k
//   tile and moves 32 KB of partials (16 KB written here, 16 KB read by the
//   reduce), so with >= 4 tiles the workspace traffic is at most the tile
//   traffic it parallelises (at the typical 9-16 tiles, 1/4-1/2 of it),
//   and a 4-stage pipeline still fills.
// - At most 16 splits: the reduce reads split partials per output.
// - At least 8 k tiles saved on the critical path: the split costs a second
//   launch (~2-3 us stand-alone, ~1 us in a CUDA graph) plus the partials'
//   round trip; a 64x64 CTA streams a k tile in very roughly 0.2-0.4 us when
//   it is alone on its SM (latency-bound), so fewer saved tiles would not pay.
//   (An estimate to be replaced by measurements; RESNET_KERNELS_CUDA_SPLIT_K
//   forces any split for that.)
// - Workspace = split * M * K * 4 bytes < 1.5 * num_sms * 64*64*4 = 3.2 MB
//   for any call the heuristic splits: it stays in the 50 MB L2, so the
//   partials' round trip costs L2, not HBM, bandwidth.
//
// ResNet-50 at batch 1 (224x224): every 3x3 and the late 1x1s split, e.g.
//   layer4.x.conv2 3x3 512->512, 7x7 (M = 49): 8 CTAs, 144 k tiles -> split 16
//     (128 CTAs of 9 k tiles; workspace 1.6 MB against 4.7 MB of weights);
//   layer4.1.conv1 1x1 2048->512, 7x7: 8 CTAs, 64 k tiles -> split 16 (4 each);
//   layer4.0.conv3 1x1 512->2048, 7x7: 32 CTAs, 16 k tiles -> split 4;
//   layer3.x.conv2 3x3 256->256, 14x14: 16 CTAs, 72 k tiles -> split 9;
//   layer1.0.conv2 3x3 64->64, 56x56: 49 CTAs, 18 k tiles -> split 3.
// The stem and the 1x1s with <= 8 k tiles or >= 67 CTAs (e.g. layer1.1.conv1,
// layer3.0.conv3: 8 k tiles, split 2 would save 4) do not split. At batch 32
// and above no ResNet-50 layer splits (its smallest grid is 200 CTAs).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kernels/launch.h"
#include "kernels/tile_config.h"
#include "kernels/tma_map.h"
#include "kernels/wgmma_config.h"

namespace resnet_kernels {
namespace {

constexpr const char* kSplitEnvVar = "RESNET_KERNELS_CUDA_SPLIT_K";
constexpr int kMaxSplit = 65535;         // grid.z limit: the largest forced value
constexpr int kMaxHeuristicSplit = 16;   // see the heuristic above
constexpr int kMinKTilesPerSplit = 4;
constexpr int kMinSavedKTiles = 8;

constexpr int kMaxDevices = 64;
std::atomic<int> sm_count_cache[kMaxDevices];  // 0 = not queried yet

bool aligned(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// 16-byte output stores of 8 channels: 8 | channels (Kg for the staged
// epilogue of either GEMM kernel, mma.sync or wgmma, whose 8-channel groups
// must not cross a group or the Kg tail; K
// for the split-K reduce), y and the per-channel vectors 16-byte aligned
// (float4 loads of scale/shift at k % 8 == 0).
bool vector_output_ok(const ConvParams& p, int channels) {
  return channels % 8 == 0 && aligned(p.y, 16) && aligned(p.scale, 16) && aligned(p.shift, 16);
}

// 16-byte residual loads: channels contiguous, every pixel's row 8-element
// aligned (so res_pixel + k, k % 8 == 0, is a multiple of 8 elements), the
// base 16-byte aligned, and 8 | res_channels so an 8-channel group is wholly
// inside or outside the option-A channel range.
bool vector_residual_ok(const ConvParams& p) {
  return p.residual != nullptr && p.res_stride_c == 1 && p.res_stride_n % 8 == 0 && p.res_stride_h % 8 == 0 &&
         p.res_stride_w % 8 == 0 && aligned(p.residual, 16) && p.res_channels % 8 == 0;
}

// CTA tile of a wgmma kernel choice; false for anything else.
bool wgmma_tile_shape(KernelChoice kernel, int* bm, int* bn) {
  switch (kernel) {
    case KernelChoice::kWgmmaN64:
      *bm = WgmmaTileN64::BM, *bn = WgmmaTileN64::BN;
      return true;
    case KernelChoice::kWgmmaN128:
      *bm = WgmmaTileN128::BM, *bn = WgmmaTileN128::BN;
      return true;
    case KernelChoice::kWgmmaN256:
      *bm = WgmmaTileN256::BM, *bn = WgmmaTileN256::BN;
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* split_k_from_env(int* forced_split) {
  *forced_split = 0;
  const char* value = std::getenv(kSplitEnvVar);
  if (value == nullptr || *value == '\0') return nullptr;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(value, &end, 10);
  if (errno == 0 && *end == '\0' && n >= 0 && n <= kMaxSplit) {
    *forced_split = int(n);
    return nullptr;
  }
  thread_local std::string message;
  message = std::string(kSplitEnvVar) + "='" + value +
            "' is not a split-K count: use an integer from 1 to 65535 to force that many k splits, or 0 (or "
            "leave it unset) for the heuristic";
  return message.c_str();
}

// Cheaper than calling cudaDeviceGetAttribute on every launch (a driver call
// behind the runtime's locks, though no GPU round trip): the count never
// changes for a device. Two threads racing on the first query store the same value.
cudaError_t multiprocessor_count(int device, int* count) {
  if (device >= 0 && device < kMaxDevices) {
    const int cached = sm_count_cache[device].load(std::memory_order_relaxed);
    if (cached > 0) {
      *count = cached;
      return cudaSuccess;
    }
  }
  const cudaError_t err = cudaDeviceGetAttribute(count, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  if (device >= 0 && device < kMaxDevices) sm_count_cache[device].store(*count, std::memory_order_relaxed);
  return cudaSuccess;
}

cudaError_t plan_conv(const ConvParams& p, int device, int num_sms, int forced_split, ConvPlan* plan) {
  *plan = ConvPlan{};
  plan->kernel = KernelChoice::kMma;
  plan->split = 1;
  if (forced_split < 0 || forced_split > kMaxSplit) return cudaErrorInvalidValue;
  if (!implicit_gemm_supports(p)) return cudaSuccess;  // the direct kernel
  plan->tensor_cores = true;

  // How a wgmma kernel would load the operands: TMA where it applies
  // (WgmmaLoads, launch.h) unless switched off, or where the driver has no
  // tensor-map encoder. The kernel choice depends on it.
  TmaChoice tma = TmaChoice::kAll;
  if (tma_from_env(&tma) != nullptr) return cudaErrorInvalidValue;
  const WgmmaLoads loads = wgmma_loads(p, tma);
  const cudaError_t err = select_kernel(p, device, num_sms, loads, &plan->kernel);
  if (err != cudaSuccess) return err;
  if (plan->kernel != KernelChoice::kMma) {  // wgmma: no split; the same vector-epilogue rule as below
    if (!wgmma_tile_shape(plan->kernel, &plan->tile_m, &plan->tile_n)) return cudaErrorInvalidValue;
    plan->vector_output = vector_output_ok(p, p.k_per_group());
    plan->vector_residual = plan->vector_output && vector_residual_ok(p);
    plan->loads = loads;
    // The persistent warp-specialised kernel where both operands and the
    // epilogue tensors move by TMA, unless switched off.
    bool persistent = true;
    if (persistent_from_env(&persistent) != nullptr) return cudaErrorInvalidValue;
    plan->persistent = wgmma_persistent(p, plan->loads, persistent);
    return cudaSuccess;
  }

  // The mma.sync tile: 128x128 halves the shared-memory traffic per MMA but
  // only pays when it still gives every SM at least one CTA.
  const int64_t M = p.pixels();
  const int kg = p.k_per_group();
  const auto ctas = [&](int bm, int bn) { return (M + bm - 1) / bm * ((kg + bn - 1) / bn) * p.groups; };
  const bool large = kg >= LargeTile::BN && ctas(LargeTile::BM, LargeTile::BN) >= num_sms;
  plan->tile_m = large ? LargeTile::BM : SmallTile::BM;
  plan->tile_n = large ? LargeTile::BN : SmallTile::BN;
  const int64_t grid = ctas(plan->tile_m, plan->tile_n);

  const int64_t k_tiles = (int64_t(p.gemm_k()) + SmallTile::BK - 1) / SmallTile::BK;  // BK = 32 for both tiles
  int64_t split = 1;
  if (forced_split >= 1) {
    split = std::min<int64_t>(forced_split, k_tiles);
  } else if (2 * grid <= num_sms && k_tiles >= 2 * kMinKTilesPerSplit) {
    split = std::min<int64_t>({(num_sms + grid - 1) / grid, k_tiles / kMinKTilesPerSplit, kMaxHeuristicSplit});
    if (k_tiles - (k_tiles + split - 1) / split < kMinSavedKTiles) split = 1;  // not worth a second kernel
  }
  plan->split = int(split);
  if (split > 1) plan->workspace_bytes = size_t(split) * size_t(M) * size_t(p.K) * sizeof(float);

  plan->vector_output = vector_output_ok(p, split > 1 ? p.K : kg);
  plan->vector_residual = plan->vector_output && vector_residual_ok(p);
  return cudaSuccess;
}

bool plan_fits(const ConvParams& p, const ConvPlan& plan, const void* workspace, size_t workspace_bytes) {
  if (plan.tensor_cores != implicit_gemm_supports(p) || plan.split < 1 || plan.split > kMaxSplit) return false;
  if (!plan.tensor_cores) return plan.split == 1 && !plan.persistent;
  if (plan.kernel != KernelChoice::kMma) {  // a wgmma tile with its own shape, never split
    int bm = 0, bn = 0;
    if (!wgmma_tile_shape(plan.kernel, &bm, &bn) || plan.tile_m != bm || plan.tile_n != bn || plan.split != 1)
      return false;
    const bool loads_fit = plan.loads == WgmmaLoads::kCpAsync || plan.loads == WgmmaLoads::kTmaB ||
                           (plan.loads == WgmmaLoads::kTmaAB && tma_gemm_input_ok(p)) ||
                           (plan.loads == WgmmaLoads::kTmaIm2col && tma_im2col_input_ok(p));
    if (!loads_fit || (plan.persistent && !wgmma_persistent(p, plan.loads, true))) return false;
  } else {
    // The mma.sync kernel has no TMA path and no persistent variant.
    if (plan.loads != WgmmaLoads::kCpAsync || plan.persistent) return false;
    const bool small = plan.tile_m == SmallTile::BM && plan.tile_n == SmallTile::BN;
    const bool large = plan.tile_m == LargeTile::BM && plan.tile_n == LargeTile::BN;
    if (!small && !large) return false;
  }
  if (plan.vector_output && !vector_output_ok(p, plan.split > 1 ? p.K : p.k_per_group())) return false;
  if (plan.vector_residual && !(plan.vector_output && vector_residual_ok(p))) return false;
  if (plan.split == 1) return true;
  const size_t needed = size_t(plan.split) * size_t(p.pixels()) * size_t(p.K) * sizeof(float);
  return workspace != nullptr && aligned(workspace, 16) && workspace_bytes >= needed;
}

}  // namespace resnet_kernels
