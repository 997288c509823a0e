// Implicit-GEMM convolution on Hopper tensor cores (wgmma.mma_async, sm_90a).
//
// Same GEMM view and fused contract as implicit_gemm.cuh (see its header):
//   D[m][n] = sum_k A[m][k] * B[n][k]; m = output pixel (n, p, q), n = output
//   channel within the group, k = (r*S + s)*Cg + c; A gathered from NHWC x per
//   k tile (padding taps, rows past M and k past gemm_k zero-filled), pre(x)
//   applied in shared memory after the copy (so padding stays 0), B = KRSC
//   weight rows; y = relu?(scale*acc + shift + residual) via epilogue.cuh.
// Same preconditions (implicit_gemm_supports): 8 | Cg, 2 | Kg, 16-byte aligned
// x and w, 4-byte aligned y.
//
// What changes against the mma.sync kernel:
// - The MMA is wgmma.mma_async.m64n{BN}k16 issued by a whole warpgroup
//   (128 threads), both operands read by the tensor cores straight from shared
//   memory through matrix descriptors (no ldmatrix, no per-warp fragments), fp32
//   accumulators in registers, asynchronous: a warpgroup keeps one k tile's
//   wgmmas in flight while it waits for and issues the copies of the next ones.
// - CTA tile BM = 128 x BN (64, 128 or 256: wgmma_config.h), BK = 64; 256
//   threads = 2 warpgroups, warpgroup g owns rows 64g .. 64g+63 of the tile
//   and all BN columns.
// - Shared tiles are [rows][64] in the 128-byte swizzle wgmma reads (derivation
//   in ptx_sm90.cuh): element (row, k) at byte
//       row * 128 + (((k / 8) ^ (row % 8)) * 16) + (k % 8) * 2,
//   every A and B tile 1024-byte aligned. A 16-byte cp.async chunk is k / 8 of
//   one row, so the gather of the mma.sync kernel carries over with only the
//   destination address changed. The same XOR makes the copies conflict-free:
//   the 8 threads writing one row's 8 chunks cover all 32 banks.
// - Operand loads, chosen per launch (WgmmaLoads, launch.h; a template
//   parameter): cp.async for both operands; or B (the weights) by TMA; or,
//   for 1x1 stride-1 calls without prologue, A and B by TMA; or, for other
//   calls with 64 | C/groups and no prologue, B by TMA and A by TMA's im2col
//   mode (one copy per k tile: one tap's 64 channels of the tile's 128
//   output pixels, padding zero-filled by the tensor unit). A TMA copy is
//   one instruction of one thread per tile and operand (tma_map.h: the maps),
//   writing the same swizzled [rows][64] tile the cp.async copies write; it
//   completes on a per-slot mbarrier that every thread waits on before the
//   tile's wgmmas (ptx_sm90.cuh). What it saves: each thread's per-tile
//   cp.async issue and address arithmetic (B_LOADS = 4-8 copies per thread
//   for B, A_LOADS = 4 more with the padding checks for A).
// - Two epilogues, chosen per launch by WgmmaOutput (from ConvPlan, uniform
//   over the grid), as in the mma.sync kernel (no split-K here):
//     vector  the fp32 tile is staged through the (then idle) ring and each
//             thread finishes 8 consecutive channels of one pixel per round:
//             16-byte residual loads where allowed, 16-byte output stores;
//     paired  straight from the accumulator fragment, 32-bit stores (any
//             2 | Kg, any alignment implicit_gemm_supports accepts).
//
// Compiled for sm_90a only: elsewhere (sm_80, plain sm_90) the kernel body is
// __trap(), so an image without wgmma can never silently produce garbage, and
// wgmma_compiled<T>() lets the host find out which image it has (probe below).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "kernels/conv_params.h"
#include "kernels/epilogue.cuh"
#include "kernels/gather.cuh"
#include "kernels/launch.h"
#include "kernels/ptx.cuh"
#include "kernels/ptx_sm90.cuh"
#include "kernels/tma_map.h"
#include "kernels/wgmma_config.h"

namespace resnet_kernels {

namespace wgmma_detail {

// Byte offset of 16-byte chunk `chunk` (= k / 8) of tile row `row` in a
// [rows][64] fp16/bf16 tile with the 128-byte swizzle.
__device__ __forceinline__ uint32_t sw128_offset(int row, int chunk) {
  return uint32_t(row) * 128u + (uint32_t(chunk ^ (row & 7)) << 4);
}

// Static shared memory of the probe kernel's sm_90a image (ints); its other
// images have none. ptxas may round the reported size up (to 1024 bytes in
// this translation unit, whose kernels declare 1024-aligned dynamic shared
// memory), so the host tests for "at least this much". 4 KB: well above the
// 1 KB that sm_90 cubins reserve for every kernel of a module in which any
// kernel uses shared memory (.nv.reservedSmem), so a plain sm_90 image can
// never pass for the sm_90a one, whatever else is added to this file.
constexpr int kProbeSharedInts = 1024;

}  // namespace wgmma_detail

// Which epilogue a launch runs (one value for the whole grid; from ConvPlan).
struct WgmmaOutput {
  bool vector;           // staged epilogue with 16-byte stores (else paired 32-bit stores)
  bool vector_residual;  // vector: 16-byte residual loads
};

// map_a / map_b: the tensor maps of A (LOADS == kTmaAB: tiled; kTmaIm2col:
// im2col) and B (LOADS != kCpAsync), else unused (tma_map.h).
template <typename T, typename Cfg, WgmmaLoads LOADS>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS)
    wgmma_conv_kernel(const ConvParams p, const WgmmaOutput out, const KDecode kd,
                      const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b) {
#if RESNET_KERNELS_SM90A
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES;
  constexpr int ROW_BYTES = BK * 2;  // 128: one swizzled line per tile row
  constexpr bool IM2COL = LOADS == WgmmaLoads::kTmaIm2col;
  constexpr bool TMA_A = both_operands_by_tma(LOADS);
  constexpr bool TMA_B = LOADS != WgmmaLoads::kCpAsync;

  // ---- Shared memory: STAGES x { A [BM][64], B [BN][64] }, each stage
  // STAGE_BYTES (a multiple of 1024) long, the base rounded up to 1024 bytes
  // (the launch reserves that slack), so every tile starts on a boundary of
  // the swizzle pattern.
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw_addr = ptx::smem_addr(smem_raw);
  const uint32_t align_pad = (1024u - (raw_addr & 1023u)) & 1023u;
  unsigned char* const smem = smem_raw + align_pad;  // generic view (prologue)
  const uint32_t smem_base = raw_addr + align_pad;  // shared::cta address (cp.async, descriptors)

  const int cg = p.c_per_group(), kg = p.k_per_group(), gemm_k = p.gemm_k();
  const int k_tiles = (gemm_k + BK - 1) / BK;
  const int n_tiles = (kg + BN - 1) / BN;
  const int group = blockIdx.y / n_tiles;
  const int n0 = (blockIdx.y - group * n_tiles) * BN;  // tile's first output channel within the group
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int64_t M = p.pixels();

  // ---- TMA: one mbarrier per ring slot ("full": the slot's TMA bytes have
  // landed), one arrival per phase (the issuing thread's arrive.expect_tx)
  // plus the bytes of the slot's copies. Slot s is filled for tiles s,
  // s + STAGES, ...: the j-th fill completes phase j, of parity j % 2.
  __shared__ __align__(8) uint64_t full_bar[TMA_B ? STAGES : 1];
  const uint32_t bar0 = ptx::smem_addr(full_bar);
  if constexpr (TMA_B) {
    if (threadIdx.x == 0) {
#pragma unroll
      for (int s = 0; s < STAGES; ++s) ptx::mbarrier_init(bar0 + 8 * s, 1);
      ptx::fence_mbarrier_init();
      ptx::prefetch_tensormap(&map_b);
      if constexpr (TMA_A) ptx::prefetch_tensormap(&map_a);
    }
    __syncthreads();  // the barriers are initialised before any thread waits on them
  }
  // im2col: the tile's first output pixel m0 = (n, op, oq) as the input
  // position of its filter's top-left tap, the copy's start coordinates.
  Im2colStart a_start{0, 0, 0};
  if constexpr (IM2COL) a_start = im2col_start(p, m0);

  // ---- Loader state (as in implicit_gemm.cuh, with 8 chunks per row).
  // Thread t copies chunk column t % 8 of tile rows t / 8 + 32i of A
  // (i < A_LOADS) and of B (i < B_LOADS): a fixed k offset inside every k
  // tile, so one reduction position (gather.cuh) serves all its copies of a
  // tile, stepped from tile to tile. Its rows all have the same row % 8
  // (ROW_STEP = 32), so their swizzled chunk position is the same and row i
  // sits at thread_off + i * ROW_STEP * 128.
  const int chunk = threadIdx.x % Cfg::CHUNKS;
  const int row0 = threadIdx.x / Cfg::CHUNKS;
  const uint32_t thread_off = wgmma_detail::sw128_offset(row0, chunk);
  constexpr uint32_t ROW_STEP_BYTES = Cfg::ROW_STEP * ROW_BYTES;

  // A rows (output pixels) and B rows (output channels) of this thread, and
  // the per-tile copies: gather.cuh, TileLoader (without the operands TMA loads).
  const TileLoader<T, TMA_A ? 0 : Cfg::A_LOADS, TMA_B ? 0 : Cfg::B_LOADS, Cfg::ROW_STEP> loader(
      p, m0, n0, row0, M, group, cg, kg, gemm_k);

  // Issue the copies of k tile k0 / BK (this thread's chunk at position kp)
  // into ring slot `stage`:
  // this thread's cp.async chunks, and (thread 0) the slot's TMA copies,
  // announced to its barrier with their byte count first. Both TMA boxes are
  // whole tiles ([BM][64] at (k, group, m0), [BN][64] at (k, n0, group)), so
  // the count is the tile bytes whatever part of them lies outside the tensors.
  // The im2col A copy takes the tap and channel of the tile from kp (thread
  // 0's chunk is the tile's first: kp.c is the tile's channel c0 within the
  // group, kp.dh, kp.dw its tap's offsets; 64 | Cg, so the tile is one tap).
  auto load_tile = [&](uint32_t stage, const KPos& kp, int k0) {
    if constexpr (!TMA_A) {
      const uint32_t sa = smem_base + stage * Cfg::STAGE_BYTES + thread_off;
      const uint32_t sb = sa + Cfg::A_BYTES;
      loader.copy(p, kp, gemm_k, sa, sb, ROW_STEP_BYTES);
    }
    if constexpr (TMA_B) {
      if (threadIdx.x == 0) {
        const uint32_t sa = smem_base + stage * Cfg::STAGE_BYTES, bar = bar0 + 8 * stage;
        ptx::mbarrier_arrive_expect_tx(bar, TMA_A ? Cfg::STAGE_BYTES : Cfg::B_BYTES);
        if constexpr (IM2COL)
          ptx::tma_load_im2col_4d(sa, &map_a, bar, group * cg + kp.c, a_start.w, a_start.h, a_start.n, uint16_t(kp.dw),
                                  uint16_t(kp.dh));
        else if constexpr (TMA_A)
          ptx::tma_load_3d(sa, &map_a, bar, k0, group, int(m0));
        ptx::tma_load_3d(sa + Cfg::A_BYTES, &map_b, bar, k0, n0, group);
      }
    }
  };

  // Prologue pre(x) on this thread's A chunks of the tile at position kp in
  // ring slot `stage` (TileLoader::preactivate).
  auto prologue_tile = [&](uint32_t stage, const KPos& kp) {
    unsigned char* sa = smem + stage * Cfg::STAGE_BYTES + thread_off;
    loader.preactivate(p, kp, gemm_k, group * cg,
                       [&](int i) { return reinterpret_cast<uint4*>(sa + i * ROW_STEP_BYTES); });
  };

  // ---- MMA state. Warpgroup wg computes D rows 64wg .. 64wg+63 (its A tile
  // starts 64 * 128 = 8192 bytes into the stage's A tile: still 1024-aligned)
  // against all BN rows of B.
  const int wg = threadIdx.x / 128;
  float acc[Cfg::ACC];
#pragma unroll
  for (int i = 0; i < Cfg::ACC; ++i) acc[i] = 0.f;
  // Descriptors: ptx::StageDescriptors (why four warp-uniform words).
  const ptx::StageDescriptors descs(raw_addr, smem_base + uint32_t(wg) * Cfg::WG_ROWS * ROW_BYTES,
                                    smem_base + Cfg::A_BYTES);

  // The 4 k16 steps of the k tile in slot `stage`, as one wgmma group. Step ks
  // reads bytes 32ks .. 32ks+31 of every (swizzled) row: start address + 32ks.
  // (STAGE_BYTES is a multiple of 1024, so stage * (STAGE_BYTES >> 4) is the
  // slot's offset >> 4 exactly: one multiply-add with each base.)
  auto mma_tile = [&](uint32_t stage) {
    const uint32_t stage_lo = stage * uint32_t(Cfg::STAGE_BYTES >> 4);
    ptx::fence_operands(acc);  // C++ accesses of acc (the zeroing) stay before the fence
    ptx::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      ptx::Wgmma<T, BN>::mma(acc, descs.a(stage_lo, ks), descs.b(stage_lo, ks), 1);
    }
    ptx::wgmma_commit_group();
  };

  // ---- Pipeline: a STAGES-slot ring, copies issued STAGES-2 k tiles ahead,
  // one wgmma group (one k tile) left in flight across iterations.
  //
  // Invariant at the barrier of iteration kt: every thread has finished
  // wgmma_wait_group<1> of iteration kt-1, so in both warpgroups all wgmma
  // groups up to tile kt-2 have completed (their shared-memory reads are done);
  // tile kt-1's group may still run. The slot refilled in iteration kt is
  // therefore that of tile kt-2: (kt + STAGES-2) % STAGES == (kt-2) % STAGES,
  // distinct from the slots of tile kt-1 (being read), tile kt (about to be
  // read) and tiles kt+1 .. kt+STAGES-3 (copies in flight).
  //
  // Tiles 0 .. STAGES-3 are put in flight first, one cp.async group per tile;
  // every iteration commits one group, empty past the last tile, so before the
  // wait of iteration kt exactly STAGES-2+kt groups exist and
  // cp_async_wait<STAGES-3> means "tile kt (group kt) has landed".
  //
  // Tiles are loaded in increasing order, each once, none after the first one
  // skipped: the position `ld` of the next tile to load starts at k tile 0 and
  // is stepped after each load. The prologue, STAGES-2 tiles behind, decodes
  // its tile's position itself (prologue path only), with two multiply-highs
  // by the launch's KDecode constants (gather.cuh), no division.
  const KStep kstep = make_kstep<BK>(p, cg);
  KPos ld = decode_kpos(p, kd, cg, chunk * 8);
  // The position of the next tile to load. Every thread's with cp.async
  // copies; with the im2col copy only thread 0's (the one that issues it;
  // the other warps skip ~14 instructions per k tile); with tiled TMA copies
  // nobody's (their coordinates are k0 and the group).
  auto step_ld = [&]() {
    if (!TMA_A || (IM2COL && threadIdx.x == 0)) advance_kpos<BK>(ld, kstep, p, cg);
  };
#pragma unroll
  for (int s = 0; s < STAGES - 2; ++s) {
    if (s < k_tiles) {
      load_tile(s, ld, s * BK);
      step_ld();
    }
    if constexpr (!TMA_A) ptx::cp_async_commit();
  }
  // Ring slots: kt % STAGES and (kt + STAGES-2) % STAGES. For a power-of-two
  // STAGES that is one AND of kt; otherwise (N128: 5 stages) a modulo by a
  // constant is a 64-bit multiply-high sequence per use, whose wide uniform
  // result also evicted a descriptor's high word (re-moved before every
  // wgmma), so the two slots are counted instead (wrapping at STAGES).
  constexpr bool POW2_STAGES = (STAGES & (STAGES - 1)) == 0;
  // `phase`: parity of the current fill of slot `slot` (flips as the slot
  // counter wraps), what the TMA barrier wait of tile kt asks for.
  uint32_t slot = 0, load_slot = STAGES - 2, phase = 0;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const uint32_t stage = POW2_STAGES ? unsigned(kt) % STAGES : slot;
    if constexpr (!TMA_A) ptx::cp_async_wait<STAGES - 3>();  // this thread's copies of tile kt are in shared memory
    // The TMA bytes of tile kt have landed and are visible to this thread
    // (and to the wgmmas it issues: both are async-proxy accesses).
    if constexpr (TMA_B) ptx::mbarrier_wait(bar0 + 8 * stage, phase);
    if (!TMA_A && p.has_prologue()) prologue_tile(stage, decode_kpos(p, kd, cg, kt * BK + chunk * 8));
    // cp.async writes and the prologue's stores are generic-proxy writes;
    // wgmma reads through the async proxy. Each thread fences its own writes,
    // then the barrier orders every thread's fenced writes before every
    // warpgroup's wgmmas (and is the point of the invariant above, which the
    // TMA refill of a slot relies on as much as the cp.async one).
    if constexpr (!TMA_A) ptx::fence_proxy_async_shared();
    __syncthreads();
    // Tensor cores first (asynchronous: the copies below are issued while they
    // run), then the refill of tile kt-2's slot.
    mma_tile(stage);
    const int next = kt + STAGES - 2;
    if (next < k_tiles) {
      load_tile(POW2_STAGES ? unsigned(next) % STAGES : load_slot, ld, next * BK);
      step_ld();
    }
    phase ^= slot == STAGES - 1 ? 1u : 0u;
    slot = slot == STAGES - 1 ? 0 : slot + 1;
    load_slot = load_slot == STAGES - 1 ? 0 : load_slot + 1;
    if constexpr (!TMA_A) ptx::cp_async_commit();
    ptx::wgmma_wait_group<1>();  // tile kt-1's wgmmas are done; tile kt's may run on
  }
  ptx::wgmma_wait_group<0>();
  ptx::fence_operands(acc);  // the epilogue's reads of acc stay after the wait

  // Accumulator fragment (ptx_sm90.cuh): warp w of the warpgroup, lane l holds
  // rows 16w + l/4 (+8) of the warpgroup's 64 and, per 8-column block j,
  // columns 8j + 2(l%4) and +1: d[4j + 2h] and d[4j + 2h + 1] for row half h.
  T* y = static_cast<T*>(p.y);
  const int lane = threadIdx.x % 32, warp_in_wg = (threadIdx.x / 32) % 4;
  const int frag_row = wg * Cfg::WG_ROWS + warp_in_wg * 16 + lane / 4;  // tile row of d[4j], d[4j + 1]

  if (out.vector) {
    // ---- Staged epilogue (host: 8 | Kg, y, scale and shift 16-byte aligned;
    // plan_conv's vector_output, the mma.sync kernel's rule). The ring becomes
    // a BM x BN fp32 staging tile (32 / 64 / 128 KB for BN = 64 / 128 / 256,
    // static_assert in WgmmaTile). Each warpgroup has waited for its own
    // wgmma groups (wait_group 0 above), so its reads of the ring are done;
    // the barrier extends that to the other warpgroup before any thread
    // overwrites a slot it may still read. Only empty cp.async groups can be
    // pending here; wait<0> makes that independent of the loop's bookkeeping.
    // (Generic stores after completed async-proxy reads: the same order as
    // the main loop's cp.async refill of a slot, which needs no proxy fence.
    // Every TMA copy was waited for in the loop: none is in flight.)
    ptx::cp_async_wait<0>();
    __syncthreads();
    float* staged = reinterpret_cast<float*>(smem);
    // Fragment -> staging tile, raw fp32 accumulators (scale and shift are
    // applied in the read phase, once per 8 channels per thread: the same
    // fp32 operations in the same order as epilogue<T>, so the result is
    // bit-identical to the paired path's). One 8-byte store per (j, h): a
    // 64-bit shared access is served per half-warp; lanes 0-15 are rows
    // r0..r0+3 (r0 = 16w + 8h (+64wg) is a multiple of 4, so x = row % 4 runs
    // 0..3), each row one aligned 8-column group (chunks 2j, 2j+1, 32 bytes).
    // Swizzled to chunks 2(j^x), 2(j^x)+1 (mod 8), the four rows cover the
    // eight 16-byte bank groups exactly once: no conflict (unswizzled, rows
    // a multiple of 128 bytes apart would be a 4-way conflict). Lanes 16-31
    // likewise (rows r0+4..r0+7).
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int col = j * 8 + 2 * (lane % 4);
#pragma unroll
      for (int half = 0; half < 2; ++half)
        *reinterpret_cast<float2*>(staged + staging_offset<BN>(frag_row + half * 8, col)) =
            make_float2(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
    }
    __syncthreads();  // the whole tile is staged
    // Staging tile -> y. Thread tid finishes the 8-column group t = tid % GROUPS
    // (the same in every round: THREADS is a multiple of GROUPS) of rows
    // (it * THREADS + tid) / GROUPS: 256 / GROUPS rows per round, BM * GROUPS /
    // 256 rounds (4 / 8 / 16 for BN = 64 / 128 / 256). A warp stores 32 x 16
    // contiguous-per-row bytes: 4 rows x 128 B, 2 x 256 B or 1 x 512 B of y,
    // whole 32-byte sectors (16 | K, 16 | Kg as in every ResNet layer).
    // The 8 threads of a quarter-warp are one row (GROUPS is a multiple of
    // 8): the read order of read_staged8 (epilogue.cuh) is conflict-free for them.
    constexpr int GROUPS = BN / 8;
    static_assert(GROUPS % 8 == 0, "one row per quarter-warp");
    const int t = threadIdx.x % GROUPS;
    const int n = n0 + 8 * t;
    if (n >= kg) return;  // 8 | Kg: the group is wholly inside or outside; no barrier follows
    const int k = group * kg + n;
    const ChannelAffine8 affine = load_affine8(p, k);  // 2 + 2 float4 loads for all the thread's rows
    store_staged_rows<T, BM, BN, Cfg::THREADS>(staged, t, k, m0, M, p.K, y, [&](float(&v)[8], int64_t m) {
      epilogue8<T>(p, v, k, p.residual ? residual_pixel_offset(p, m) : 0, out.vector_residual, affine);
    });
    return;
  }

  // ---- Paired epilogue straight from the accumulators (any 2 | Kg, any
  // alignment implicit_gemm_supports allows). The column pair is one 32-bit
  // store (Kg even, so n + 1 < Kg whenever n < Kg); NHWC y is the row-major
  // M x K matrix, row m at y + m*K.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t m = m0 + frag_row + half * 8;
    if (m >= M) continue;
    const int64_t res_pixel = p.residual ? residual_pixel_offset(p, m) : 0;
    T* y_row = y + m * p.K;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int n = n0 + j * 8 + 2 * (lane % 4);
      if (n >= kg) continue;
      const int k = group * kg + n;
      const float v0 = epilogue<T>(p, acc[4 * j + 2 * half], k, res_pixel);
      const float v1 = epilogue<T>(p, acc[4 * j + 2 * half + 1], k + 1, res_pixel);
      *reinterpret_cast<uint32_t*>(y_row + k) = pack2<T>(v0, v1);
    }
  }
#else
  __trap();  // not sm_90a code: no wgmma here (the host checks wgmma_compiled first)
#endif
}

// Tells the host which image of this translation unit the current device runs:
// its sm_90a image declares kProbeSharedInts ints of static shared memory, any
// other image none, and cudaFuncGetAttributes reports the size without a
// launch (no synchronisation, usable while a stream is being captured). It
// lives next to the kernels so it is in the same fatbinary, hence the same
// image choice, as them.
template <typename T>
__global__ void wgmma_probe_kernel(int* out) {
#if RESNET_KERNELS_SM90A
  __shared__ int marker[wgmma_detail::kProbeSharedInts];
  marker[threadIdx.x % wgmma_detail::kProbeSharedInts] = int(threadIdx.x);
  __syncthreads();
  if (out != nullptr) *out = marker[(threadIdx.x + 1) % wgmma_detail::kProbeSharedInts];
#else
  if (out != nullptr) *out = 0;
#endif
}

template <typename T>
cudaError_t wgmma_compiled(bool* compiled) {
  *compiled = false;
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, wgmma_probe_kernel<T>);
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
    (void)cudaGetLastError();  // not sticky: clear it so the next launch's check does not see it
    return cudaSuccess;        // no image at all for this device: not available
  }
  if (err != cudaSuccess) return err;
  *compiled = attr.sharedSizeBytes >= sizeof(int) * wgmma_detail::kProbeSharedInts;
  return cudaSuccess;
}

template <typename T, typename Cfg, WgmmaLoads LOADS>
cudaError_t launch_wgmma_tile(const ConvParams& p, const WgmmaOutput& out, cudaStream_t stream) {
  const int kg = p.k_per_group();
  const int64_t m_tiles = (p.pixels() + Cfg::BM - 1) / Cfg::BM;
  const int64_t n_tiles = int64_t(kg + Cfg::BN - 1) / Cfg::BN * p.groups;
  if (m_tiles > 0x7fffffff || n_tiles > 65535) return cudaErrorInvalidValue;  // implicit_gemm_supports rules it out
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  CUtensorMap map_a{}, map_b{};  // zero where unused
  cudaError_t err = cudaSuccess;
  if (LOADS != WgmmaLoads::kCpAsync) err = encode_weight_map(p, bf16, Cfg::BN, &map_b);
  if (err == cudaSuccess && LOADS == WgmmaLoads::kTmaAB) err = encode_gemm_input_map(p, bf16, Cfg::BM, &map_a);
  if (err == cudaSuccess && LOADS == WgmmaLoads::kTmaIm2col)
    err = encode_im2col_input_map(p, bf16, Cfg::BM, &map_a);
  if (err != cudaSuccess) return err;
  auto* kernel = wgmma_conv_kernel<T, Cfg, LOADS>;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM_BYTES);
  if (err != cudaSuccess) return err;
  kernel<<<dim3(unsigned(m_tiles), unsigned(n_tiles)), Cfg::THREADS, Cfg::SMEM_BYTES, stream>>>(
      p, out, make_kdecode(p), map_a, map_b);
  return cudaGetLastError();
}

template <typename T, typename Cfg>
cudaError_t launch_wgmma_loads(const ConvParams& p, const WgmmaOutput& out, WgmmaLoads loads, cudaStream_t stream) {
  switch (loads) {
    case WgmmaLoads::kCpAsync:
      return launch_wgmma_tile<T, Cfg, WgmmaLoads::kCpAsync>(p, out, stream);
    case WgmmaLoads::kTmaB:
      return launch_wgmma_tile<T, Cfg, WgmmaLoads::kTmaB>(p, out, stream);
    case WgmmaLoads::kTmaAB:
      return launch_wgmma_tile<T, Cfg, WgmmaLoads::kTmaAB>(p, out, stream);
    case WgmmaLoads::kTmaIm2col:
      return launch_wgmma_tile<T, Cfg, WgmmaLoads::kTmaIm2col>(p, out, stream);
  }
  return cudaErrorInvalidValue;
}

// The host has validated `plan` against p (plan_fits, launch.cu): a wgmma
// tile, split 1, vector flags only where p's alignment allows them, and TMA
// loads of A only where the call admits them (tma_gemm_input_ok,
// tma_im2col_input_ok).
template <typename T>
cudaError_t launch_wgmma_conv(const ConvParams& p, const ConvPlan& plan, cudaStream_t stream) {
  // Without sm_90a code the kernel is a trap, which would lose the CUDA
  // context: refuse instead (cached per device: one atomic load per launch).
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (!wgmma_available(device)) return cudaErrorInvalidDeviceFunction;
  const WgmmaOutput out{plan.vector_output, plan.vector_output && plan.vector_residual};
  switch (plan.kernel) {
    case KernelChoice::kWgmmaN64:
      return launch_wgmma_loads<T, WgmmaTileN64>(p, out, plan.loads, stream);
    case KernelChoice::kWgmmaN128:
      return launch_wgmma_loads<T, WgmmaTileN128>(p, out, plan.loads, stream);
    case KernelChoice::kWgmmaN256:
      return launch_wgmma_loads<T, WgmmaTileN256>(p, out, plan.loads, stream);
    default:
      return cudaErrorInvalidValue;  // a concrete tile is required (select_kernel picks one)
  }
}

}  // namespace resnet_kernels
