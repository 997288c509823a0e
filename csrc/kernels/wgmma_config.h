// Tile shapes of the Hopper (sm_90a) wgmma kernel, host and device; no kernel
// code, so the host-side choice (wgmma_select.cu) can size grids without
// instantiating the kernel.
#pragma once

#include <cuda_runtime.h>

namespace resnet_kernels {

// A BM x BN tile of D per CTA; two consumer warpgroups (256 threads), warpgroup
// i computing rows 64i .. 64i+63 with wgmma.m64n{BN}k16. BK = 64 fp16/bf16
// elements: one 128-byte line per tile row, the width of the 128-byte swizzle
// (ptx_sm90.cuh), so a k tile is 4 wgmma k16 steps.
template <int BN_, int STAGES_>
struct WgmmaTile {
  static constexpr int BM = 128, BN = BN_, BK = 64, STAGES = STAGES_;
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
  static_assert(SMEM_BYTES <= 227 * 1024, "H100 opt-in shared memory per block");
};

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
