// Tile shapes of the tensor-core kernel (host and device; no kernel code, so
// launch.cu can size grids without instantiating the kernel).
#pragma once

namespace resnet_kernels {

// MIN_BLOCKS: CTAs per SM the kernel is compiled for (__launch_bounds__), i.e.
// a register cap of 65536 / (MIN_BLOCKS * THREADS) per thread. Without it ptxas
// is free to trade occupancy for fewer instructions (it takes 157 registers
// for the 128x128 kernel and 118 for the 64x64 one once the staged epilogue is
// in: 1 and 4 CTAs per SM). Both caps compile without spills (sm_80, sm_90a).
template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = 32, STAGES = STAGES_, MIN_BLOCKS = MIN_BLOCKS_;
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
  static_assert(BM * BN * 4 <= SMEM_BYTES, "the vector epilogue stages the fp32 tile in the ring");
};

// 8 warps with 64x32 warp tiles: 16 MMAs per 4+2 ldmatrix.x4 per k16 step.
// 2 CTAs per SM (<= 128 registers, 2 x 64 KB shared memory): one CTA's
// epilogue overlaps the other's main loop.
using LargeTile = TileConfig<128, 128, 2, 4, 4, 2>;  // 64 KB shared memory
// 4 warps with 32x32 warp tiles: for small grids (batch 1, late layers) and narrow groups.
// 5 CTAs per SM on an H100 (<= 102 registers; ptxas takes 96, as before the
// epilogue and split-K additions, with no spills). An A100's 164 KB of shared
// memory per SM holds only 4 of them (33 KB each with the 1 KB reservation).
using SmallTile = TileConfig<64, 64, 2, 2, 4, 5>;    // 32 KB shared memory

}  // namespace resnet_kernels
