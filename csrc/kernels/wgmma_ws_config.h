// Tile shapes of the persistent warp-specialised wgmma kernel
// (wgmma_ws_conv.cuh), host and device; no kernel code.
#pragma once

#include <cstdint>

namespace resnet_kernels {

// A BM x BN tile of D at a time per CTA, one CTA per SM walking the output
// tiles. 384 threads: warpgroup 0 is the producer (thread 0 issues the
// operand copies, thread 32 the residual copies), warpgroups 1 and 2 the consumers (consumer c computes rows
// 64c .. 64c+63 of the tile with wgmma.m64n{BN}k16 and finishes them in the
// epilogue). Shared memory: a STAGES-slot ring of operand k tiles (A [128][64]
// and B [BN][64], BK = 64: one 128-byte swizzled line per row, as in
// wgmma_config.h) and EPI_BUFFERS epilogue tiles of BM x BN elements of the
// output type, each stored as BN / 64 column blocks of [128][64] in the same
// 128-byte swizzle (the residual arrives there by TMA, the output leaves from
// there by TMA, in place).
template <int BN_, int STAGES_, int EPI_BUFFERS_>
struct WgmmaWsTile {
  static constexpr int BM = 128, BN = BN_, BK = 64, STAGES = STAGES_, EPI_BUFFERS = EPI_BUFFERS_;
  static constexpr int THREADS = 384;                    // producer warpgroup + 2 consumer warpgroups
  static constexpr int CONSUMERS = 2, WG_ROWS = 64;      // rows of D per consumer warpgroup
  static constexpr int ACC = WG_ROWS * BN / 128;         // fp32 accumulators per consumer thread
  static constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2;
  static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int COL_BLOCKS = BN / 64;             // 64-channel column blocks of an epilogue tile
  static constexpr int EPI_BLOCK_BYTES = BM * 64 * 2;    // one [128][64] block: 16 KB
  static constexpr int EPI_BYTES = COL_BLOCKS * EPI_BLOCK_BYTES;
  // +1 KB: the base is rounded up to the 1024-byte repeat of the swizzle.
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + EPI_BUFFERS * EPI_BYTES + 1024;
  // Registers per thread after setmaxnreg: the producer needs a handful, the
  // consumers hold the accumulators. 128 * 40 + 256 * 232 = 64,512 <= 65,536.
  static constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
  static_assert(128 * PRODUCER_REGS + 256 * CONSUMER_REGS <= 65536, "the register file of one SM");
  static_assert(BN % 64 == 0 && BN >= 64 && BN <= 256, "wgmma N up to 256, whole 64-channel epilogue blocks");
  static_assert(STAGES >= 2 && EPI_BUFFERS >= 1, "a ring and at least one epilogue tile");
  static_assert(STAGE_BYTES % 1024 == 0 && EPI_BLOCK_BYTES % 1024 == 0, "every tile 1024-byte aligned");
  static_assert(SMEM_BYTES <= 227 * 1024, "H100 opt-in shared memory per block");
};

// Byte offset, within an epilogue tile, of the 4-byte pair a consumer thread
// finishes for its accumulators d[4j + 2*half], d[4j + 2*half + 1]: consumer
// c, warp `warp` (0-3) of its warpgroup, lane `lane`. The wgmma fragment
// (ptx_sm90.cuh) puts them at tile row 64c + 16*warp + lane/4 + 8*half,
// columns 8j + 2(lane%4) and +1; the tile stores column block col/64 as a
// [128][64] block in the 128-byte swizzle the TMA copies use:
//   block * 16384 + row * 128 + ((col % 64) / 8 ^ row % 8) * 16 + (col % 8) * 2,
// where row % 8 = lane / 4 (64c, 16*warp and 8*half are multiples of 8).
// A warp's 32 lanes at one (j, half) hit bank 4 * ((j % 8) ^ lane/4) + lane % 4:
// all 32 banks once. (test_tma_rules checks both statements.)
__host__ __device__ constexpr uint32_t ws_pair_offset(int c, int warp, int lane, int j, int half) {
  return uint32_t(j / 8) * (128 * 64 * 2) + uint32_t(64 * c + 16 * warp + lane / 4 + 8 * half) * 128 +
         (uint32_t((j % 8) ^ (lane / 4)) << 4) + 4u * uint32_t(lane % 4);
}

// The three tiles of the wgmma kernel (same selection, wgmma_select.cu).
// Depths: as many ring slots as fit next to two epilogue tiles (one for
// 128x256, whose 64 KB tile leaves room for 3 slots only), so the producer
// can run up to STAGES k tiles (and the next tile's residual) ahead:
//   128x64:  6 x 24 KB + 2 x 16 KB = 176 KB
//   128x128: 4 x 32 KB + 2 x 32 KB = 192 KB
//   128x256: 3 x 48 KB + 1 x 64 KB = 208 KB
// With one epilogue tile (128x256) the next tile's residual copy waits until
// the current tile's store has read it; those calls have long k loops
// (compute-bound layers), which hide it.
using WgmmaWsTileN64 = WgmmaWsTile<64, 6, 2>;
using WgmmaWsTileN128 = WgmmaWsTile<128, 4, 2>;
using WgmmaWsTileN256 = WgmmaWsTile<256, 3, 1>;

}  // namespace resnet_kernels
