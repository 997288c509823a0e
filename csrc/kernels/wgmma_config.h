// Tile shapes of the Hopper (sm_90a) wgmma kernel, host and device; no kernel
// code, so the host-side choice (wgmma_select.cu) can size grids without
// instantiating the kernel.
#pragma once

#include <cuda_runtime.h>

namespace resnet_kernels {

// A BM x BN tile of D per CTA; two consumer warpgroups (256 threads), warpgroup
// i computing rows 64i .. 64i+63 with wgmma.m64n{BN}k16. BK = 64 fp16/bf16
// elements: one 128-byte line per tile row, the width of the 128-byte swizzle
// (ptx_sm90.cuh), so a k tile is 4 wgmma k16 steps. MIN_BLOCKS: the CTAs per
// SM the kernel is compiled for (__launch_bounds__; a cap of 65536 /
// (256 * MIN_BLOCKS) registers per thread) and sized for in shared memory.
template <int BN_, int STAGES_, int MIN_BLOCKS_ = 1>
struct WgmmaTile {
  static constexpr int BM = 128, BN = BN_, BK = 64, STAGES = STAGES_, MIN_BLOCKS = MIN_BLOCKS_;
  static constexpr int THREADS = 256;                  // 2 warpgroups, each loads and computes
  static constexpr int WG_ROWS = 64;                   // wgmma M: rows of D per warpgroup
  static constexpr int ACC = WG_ROWS * BN / 128;       // fp32 accumulators per thread (BN / 2)
  static constexpr int CHUNKS = BK / 8;                // 16-byte chunks per tile row (8)
  static constexpr int ROW_STEP = THREADS / CHUNKS;    // rows between one thread's chunks (32)
  static constexpr int A_LOADS = BM / ROW_STEP;        // A chunks per thread per k tile (4)
  static constexpr int B_LOADS = BN / ROW_STEP;        // B chunks per thread per k tile (4 or 8)
  static constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  // +1 KB: the kernel rounds the dynamic shared-memory base up to the
  // 1024-byte boundary the 128-byte swizzle pattern repeats on.
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024;
  static_assert(BN % 64 == 0 && BN >= 64 && BN <= 256, "wgmma N is a multiple of 8 up to 256; 64-row B loads");
  static_assert(ROW_STEP % 8 == 0, "a thread's rows share row % 8, hence one swizzle phase for all its chunks");
  static_assert(A_BYTES % 1024 == 0 && STAGE_BYTES % 1024 == 0, "every A and B tile starts 1024-byte aligned");
  static_assert(STAGES >= 3, "prefetch distance STAGES - 2 must be at least 1");
  // The staged epilogue reuses the ring as a BM x BN fp32 tile (wgmma_conv.cuh).
  static constexpr int STAGING_BYTES = BM * BN * 4;
  static_assert(STAGING_BYTES <= STAGES * STAGE_BYTES, "the fp32 staging tile fits in the ring");
  static_assert(SMEM_BYTES <= 227 * 1024, "H100 opt-in shared memory per block");
  // 228 KB of shared memory per SM, 1 KB of it reserved per resident CTA.
  static_assert(MIN_BLOCKS * (SMEM_BYTES + 1024) <= 228 * 1024, "MIN_BLOCKS CTAs fit on one SM");
};

// 128 x 64, for K/groups <= 64 (ResNet-50 layer1's 64-channel convs and the
// stem, where 128x128 would compute half its columns for nothing): 32
// accumulators per thread; 4 x 24 KB ring (prefetch distance 2), 97 KB per
// CTA so that TWO CTAs share an SM (2 x 98 KB with the reservation, <= 228 KB;
// <= 128 registers per thread). Its GEMMs are short (layer1: 4-9 k tiles of
// 64), so the fill of the ring and the epilogue are a large part of a CTA's
// life; a second resident CTA overlaps them with its own main loop, which a
// deeper ring (8 x 24 KB = 193 KB, one CTA, 6 k tiles in flight per SM against
// 2 x 2 here) cannot. To be checked against that alternative on the GPU.
using WgmmaTileN64 = WgmmaTile<64, 4, 2>;
// 128 x 128: 64 accumulators per thread; 5 x 32 KB ring (prefetch distance 3).
using WgmmaTileN128 = WgmmaTile<128, 5>;
// 128 x 256: 128 accumulators per thread; 4 x 48 KB ring (prefetch distance 2,
// each k tile twice the MMA work of the N128 one).
using WgmmaTileN256 = WgmmaTile<256, 4>;

// Whether this binary's image of the wgmma kernels for the current device is
// sm_90a code (instantiated in wgmma_conv_{fp16,bf16}.cu, one per fatbinary).
// *compiled = false with cudaSuccess when the image is not sm_90a (an sm_80 or
// plain sm_90 build, whose kernels trap) or there is no image for the device.
template <typename T>
cudaError_t wgmma_compiled(bool* compiled);

}  // namespace resnet_kernels
