// Tile shapes of the tensor-core kernel (host and device; no kernel code, so
// launch.cu can size grids without instantiating the kernel).
#pragma once

namespace resnet_kernels {

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = 32, STAGES = STAGES_;
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  static constexpr int MMA_M = WM / 16, MMA_N = WN / 8;        // m16n8 tiles per warp
  static constexpr int CHUNKS = BK / 8;                        // 16-byte chunks per tile row
  static constexpr int ROW_STEP = THREADS / CHUNKS;            // rows between one thread's chunks
  static constexpr int A_LOADS = BM / ROW_STEP, B_LOADS = BN / ROW_STEP;
  static constexpr int A_TILE = BM * BK, B_TILE = BN * BK;     // elements per stage
  static constexpr int SMEM_BYTES = STAGES * (A_TILE + B_TILE) * 2;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warps step through A and B in 16-row ldmatrix.x4 blocks");
  static_assert(BM % ROW_STEP == 0 && BN % ROW_STEP == 0, "each load round copies whole rows");
};

// 8 warps with 64x32 warp tiles: 16 MMAs per 4+2 ldmatrix.x4 per k16 step.
using LargeTile = TileConfig<128, 128, 2, 4, 4>;  // 64 KB shared memory
// 4 warps with 32x32 warp tiles: for small grids (batch 1, late layers) and narrow groups.
using SmallTile = TileConfig<64, 64, 2, 2, 4>;    // 32 KB shared memory

}  // namespace resnet_kernels
