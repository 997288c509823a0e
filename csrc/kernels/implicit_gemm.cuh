// Implicit-GEMM convolution on tensor cores (mma.sync m16n8k16, sm_80+).
//
// For one group g the convolution is the GEMM  D[m][n] = sum_k A[m][k] * B[n][k]:
//   m = output pixel (n, p, q) flattened, M = N*P*Q rows;
//   n = output channel within the group, K/groups columns;
//   k = (r, s, c) flattened as (r*S + s)*Cg + c, gemm_k = R*S*Cg (Cg = C/groups);
//   A[m][k] = pre(x[n, p*stride_h - pad_h + r*dil_h, q*stride_w - pad_w + s*dil_w, g*Cg + c]),
//             0 outside the image (padding is applied after the prologue);
//   B[n][k] = w[g*Kg + n][r][s][c]: a KRSC weight is B itself, each row contiguous in k.
// A is never materialised: each k tile's A rows are gathered from NHWC x.
//
// One CTA computes a BM x BN tile of D (grid.x over M tiles, grid.y over
// (group, N tile)), with a STAGES-deep ring of shared-memory buffers filled by
// cp.async, BK = 32 elements of k per stage. Requires 8 | Cg, so a 16-byte
// chunk (8 elements) of a tile row never straddles two taps, and 2 | Kg for
// the paired output stores (see implicit_gemm_supports in launch.cu).
//
// Split-K (grid.z = split > 1): CTA z reduces only its contiguous range of k
// tiles and writes the fp32 partial tile to a workspace [split][M][K]; the
// fused epilogue then runs in splitk_reduce.cu, which sums the partials in a
// fixed order. The prologue stays here (it transforms A before the MMA).
//
// Three epilogues, chosen per launch by GemmOutput (uniform over the grid):
//   partials  split-K: fp32 pairs (8-byte stores) into the workspace;
//   vector    the tile, scale and shift applied, is staged through the (then
//             idle) pipeline shared memory and each thread finishes 8
//             consecutive channels of one pixel: 16-byte residual loads and
//             16-byte output stores;
//   paired    straight from the MMA fragments, 32-bit stores (any 2 | Kg).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/conv_params.h"
#include "kernels/epilogue.cuh"
#include "kernels/gather.cuh"
#include "kernels/launch.h"
#include "kernels/ptx.cuh"
#include "kernels/tile_config.h"

namespace resnet_kernels {

// Element offset of (row, 16-byte chunk) in a [rows][32] tile. A row is 64
// bytes, so rows r and r+2 are 128 bytes apart and would hit the same banks
// when ldmatrix reads one chunk from each of 8 consecutive rows (4-way
// conflict). XOR-ing the chunk with (row/2)%4 places rows 2i and 2i+1 in the
// two halves of a 128-byte line at chunk c^i: 8 consecutive rows cover all 8
// 16-byte bank groups, for reads and for the cp.async writes alike.
__device__ __forceinline__ int swizzle(int row, int chunk) { return row * 32 + ((chunk ^ ((row >> 1) & 3)) << 3); }

// Where the kernel's results go (one value for the whole grid).
struct GemmOutput {
  float* partials;       // split-K: the fp32 [split][M][K] workspace, else nullptr
  bool vector;           // (no split) staged epilogue with 16-byte stores, else paired 32-bit stores
  bool vector_residual;  // vector: 16-byte residual loads (see vector_residual_ok in launch.cu)
};

template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS)
    implicit_gemm_kernel(const ConvParams p, const GemmOutput out, const KDecode kd) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES;
  extern __shared__ __align__(128) unsigned char smem[];
  T* smem_a = reinterpret_cast<T*>(smem);           // STAGES x [BM][BK]
  T* smem_b = smem_a + STAGES * Cfg::A_TILE;        // STAGES x [BN][BK]

  const int cg = p.c_per_group(), kg = p.k_per_group(), gemm_k = p.gemm_k();
  const int k_tiles = (gemm_k + BK - 1) / BK;
  const int n_tiles = (kg + BN - 1) / BN;
  const int group = blockIdx.y / n_tiles;
  const int n0 = (blockIdx.y - group * n_tiles) * BN;  // tile's first output channel within the group
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int64_t M = p.pixels();
  // Split-K: CTA z of split = gridDim.z reduces the contiguous k tiles
  // [kt_begin, kt_end): with q = k_tiles / split and r = k_tiles % split, the
  // first r splits get q + 1 tiles and the rest q, in order, so the ranges
  // cover 0..k_tiles-1 exactly once (z*q + min(z, r) <= k_tiles: no overflow).
  // The host keeps split <= k_tiles, so none is empty; an empty range would
  // still be correct (its partials are zeros).
  const int split = int(gridDim.z), z = int(blockIdx.z);
  const int q = k_tiles / split, r = k_tiles - q * split;
  const int kt_begin = z * q + min(z, r);
  const int kt_end = kt_begin + q + (z < r ? 1 : 0);

  // ---- Loader state. Thread t copies chunk column t % CHUNKS of tile rows
  // t / CHUNKS + i*ROW_STEP, of A and of B. Its k offset inside every k tile is
  // therefore fixed: one reduction position (gather.cuh) serves all its copies
  // of a tile, and it is stepped from tile to tile, not decoded.
  const int chunk = threadIdx.x % Cfg::CHUNKS;
  const int row0 = threadIdx.x / Cfg::CHUNKS;

  // A rows (output pixels) and B rows (output channels) of this thread, and
  // the per-tile copies: gather.cuh, TileLoader.
  const TileLoader<T, Cfg::A_LOADS, Cfg::B_LOADS, Cfg::ROW_STEP> loader(p, m0, n0, row0, M, group, cg, kg, gemm_k);

  // Shared-memory addresses (shared::cta, 32 bits): this thread's copy slot of
  // row0 in ring slot 0; row i is i*ROW_STEP rows = i*ROW_STEP*64 bytes further
  // and keeps the same swizzle phase (ROW_STEP is a multiple of 8).
  const uint32_t smem_base = ptx::smem_addr(smem);
  const uint32_t copy_off = smem_base + uint32_t(swizzle(row0, chunk)) * uint32_t(sizeof(T));
  static_assert(Cfg::ROW_STEP % 8 == 0, "one swizzle phase for all of a thread's rows");
  constexpr uint32_t ROW_STEP_BYTES = Cfg::ROW_STEP * BK * sizeof(T);
  constexpr uint32_t A_STAGE_BYTES = Cfg::A_TILE * sizeof(T), B_STAGE_BYTES = Cfg::B_TILE * sizeof(T);
  constexpr uint32_t B_RING_OFF = STAGES * A_STAGE_BYTES;

  // Issue the copies of the k tile at position kp into ring slot `stage`.
  auto load_tile = [&](uint32_t stage, const KPos& kp) {
    const uint32_t sa = copy_off + stage * A_STAGE_BYTES;
    const uint32_t sb = copy_off + B_RING_OFF + stage * B_STAGE_BYTES;
    loader.copy(p, kp, gemm_k, sa, sb, ROW_STEP_BYTES);
  };

  // Prologue pre(x) on this thread's A chunks of the tile at position kp in
  // ring slot `stage` (TileLoader::preactivate).
  auto prologue_tile = [&](uint32_t stage, const KPos& kp) {
    T* sa = smem_a + stage * Cfg::A_TILE;
    loader.preactivate(p, kp, gemm_k, group * cg, [&](int i) {
      return reinterpret_cast<uint4*>(sa + swizzle(row0 + i * Cfg::ROW_STEP, chunk));
    });
  };

  // ---- MMA state. Warps form a WARPS_M x WARPS_N grid of WM x WN warp tiles.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int wm0 = (warp / Cfg::WARPS_N) * Cfg::WM;
  const int wn0 = (warp % Cfg::WARPS_N) * Cfg::WN;
  float acc[Cfg::MMA_M][Cfg::MMA_N][4] = {};

  // ldmatrix row addresses in ring slot 0, per k16 step ks (the swizzled chunk
  // depends on ks): A block i and B block j are i*16 and j*16 rows (1 KB
  // apart, the same swizzle phase) further, which ptxas folds into the
  // instructions' immediate offsets. Per k tile only the slot offset is added.
  // A 16x16 block = matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in mma's
  // a0..a3 order: lane l gives the address of row l%16, k half l/16.
  // B rows are n with k contiguous, which is mma's "col" operand as is.
  // Matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15):
  // lane l gives row (l/16)*8 + l%8, k half (l/8)%2; registers 0,1 feed
  // n tile 2j and registers 2,3 n tile 2j+1.
  uint32_t lda[BK / 16], ldb[BK / 16];
#pragma unroll
  for (int ks = 0; ks < BK / 16; ++ks) {
    lda[ks] = smem_base + uint32_t(swizzle(wm0 + lane % 16, 2 * ks + lane / 16)) * uint32_t(sizeof(T));
    ldb[ks] = smem_base + B_RING_OFF +
              uint32_t(swizzle(wn0 + (lane / 16) * 8 + lane % 8, 2 * ks + (lane / 8) % 2)) * uint32_t(sizeof(T));
  }
  constexpr uint32_t BLOCK16_BYTES = 16 * BK * sizeof(T);

  auto compute_tile = [&](uint32_t stage) {
    const uint32_t sa = stage * A_STAGE_BYTES, sb = stage * B_STAGE_BYTES;
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      uint32_t a[Cfg::MMA_M][4], b[Cfg::MMA_N][2];
#pragma unroll
      for (int i = 0; i < Cfg::MMA_M; ++i) ptx::ldmatrix_x4(a[i], lda[ks] + sa + i * BLOCK16_BYTES);
#pragma unroll
      for (int j = 0; j < Cfg::MMA_N / 2; ++j) {
        uint32_t r[4];
        ptx::ldmatrix_x4(r, ldb[ks] + sb + j * BLOCK16_BYTES);
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < Cfg::MMA_M; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::MMA_N; ++j) ptx::mma_16816<T>(acc[i][j], a[i], b[j]);
    }
  };

  // ---- Pipeline over this CTA's k tiles kt_begin..kt_end-1, tile kt in ring
  // slot kt % STAGES (absolute kt: any start works, and the loop needs no
  // more registers than an unsplit one). Tiles kt_begin..kt_begin+STAGES-2
  // are put in flight first, one commit group per tile (empty groups past
  // the last tile keep the group count uniform, so wait<STAGES-2> always
  // means "tile kt has landed").
  // Tiles are loaded in increasing order, each once, and none after the first
  // one skipped, so one position `ld` (the next tile to load) is decoded at
  // kt_begin, which may lie inside a tap (split-K), and stepped after each
  // load. The prologue, STAGES-1 tiles behind, decodes its tile's position
  // itself (a second stepped position costs registers the 128x128 tile does
  // not have under its cap: a 4-byte spill); the decode is two multiply-highs
  // by the launch's KDecode constants (gather.cuh), no division.
  const KStep kstep = make_kstep<BK>(p, cg);
  KPos ld = decode_kpos(p, kd, cg, kt_begin * BK + chunk * 8);
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (kt_begin + s < kt_end) {
      load_tile(unsigned(kt_begin + s) % STAGES, ld);
      advance_kpos<BK>(ld, kstep, p, cg);
    }
    ptx::cp_async_commit();
  }
  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const uint32_t stage = unsigned(kt) % STAGES;
    ptx::cp_async_wait<STAGES - 2>();  // this thread's copies of tile kt are in shared memory
    if (p.has_prologue()) prologue_tile(stage, decode_kpos(p, kd, cg, kt * BK + chunk * 8));
    // One barrier does two jobs: tile kt (prologue included) becomes visible
    // to every warp, and every warp has finished computing tile kt-1, whose
    // slot ((kt-1) % STAGES == (kt+STAGES-1) % STAGES) is refilled next.
    __syncthreads();
    const int next = kt + STAGES - 1;
    if (next < kt_end) {
      load_tile(unsigned(next) % STAGES, ld);
      advance_kpos<BK>(ld, kstep, p, cg);
    }
    ptx::cp_async_commit();
    compute_tile(stage);  // overlaps with the STAGES-1 tiles in flight
  }

  // ---- Split-K partials: lane l holds rows l/4 and l/4 + 8 and columns
  // 2*(l%4), 2*(l%4)+1 of each m16n8 tile (the mma.sync D fragment); the pair
  // is one 8-byte store into split z's [M][K] slice, row m at m*K. The four
  // lanes of a row cover 32 contiguous bytes: one full sector per row.
  // k = group*Kg + n is even (Kg even), so with K even every pair is 8-byte
  // aligned (the workspace base is 16-byte aligned: checked on the host).
  if (out.partials != nullptr) {
    float* part = out.partials + int64_t(blockIdx.z) * M * p.K;
#pragma unroll
    for (int i = 0; i < Cfg::MMA_M; ++i) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t m = m0 + wm0 + i * 16 + lane / 4 + half * 8;
        if (m >= M) continue;
        float* row = part + m * p.K;
#pragma unroll
        for (int j = 0; j < Cfg::MMA_N; ++j) {
          const int n = n0 + wn0 + j * 8 + 2 * (lane % 4);
          if (n >= kg) continue;
          *reinterpret_cast<float2*>(row + group * kg + n) = make_float2(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
        }
      }
    }
    return;
  }

  T* y = static_cast<T*>(p.y);
  if (out.vector) {
    // ---- Vector epilogue (host: 8 | Kg, y, scale and shift 16-byte aligned).
    // The ring is reused as a BM x BN fp32 staging tile: 16 KB (64x64) or
    // 64 KB (128x128), within SMEM_BYTES (static_assert in TileConfig). Every
    // copy must have landed and every warp must be done reading the ring
    // first: after the loop only empty groups can still be pending, but
    // wait<0> makes that independent of the loop's bookkeeping; the barrier
    // then orders all warps' last ldmatrix before any staging store.
    ptx::cp_async_wait<0>();
    __syncthreads();
    float* staged = reinterpret_cast<float*>(smem);
    // Fragment -> staging tile, with scale and shift applied here (each lane
    // owns 2 columns per n8 block for all its rows, so 2 + 2 loads per block
    // serve 2 * MMA_M rows, and the read phase below holds no per-channel
    // registers). Columns past Kg (a tile's tail) are staged unscaled and
    // never stored. 8-byte stores; a 64-bit shared access is served per
    // half-warp: lanes 0-15 are rows r0..r0+3 (r0 % 4 == 0, so x = row % 4 =
    // 0..3), each writing one aligned 8-column group (chunks 2i, 2i+1). With
    // the swizzle those land on chunks 2(i^x), 2(i^x)+1 (mod 8): the four rows
    // cover the eight 16-byte bank groups exactly once, no conflict
    // (unswizzled, rows BN floats apart would be a 4-way conflict).
#pragma unroll
    for (int j = 0; j < Cfg::MMA_N; ++j) {
      const int col = wn0 + j * 8 + 2 * (lane % 4);
      const int n = n0 + col;
      float2 sc = make_float2(1.f, 1.f), sh = make_float2(0.f, 0.f);
      if (n < kg) {  // k = group*Kg + n is even and scale/shift 16-byte aligned: 8-byte loads
        const int k = group * kg + n;
        if (p.scale) sc = __ldg(reinterpret_cast<const float2*>(p.scale + k));
        if (p.shift) sh = __ldg(reinterpret_cast<const float2*>(p.shift + k));
      }
#pragma unroll
      for (int i = 0; i < Cfg::MMA_M; ++i)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = wm0 + i * 16 + lane / 4 + half * 8;
          // Same order as epilogue<T>: acc * scale, then + shift (each skipped when absent).
          float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
          if (p.scale) v0 *= sc.x, v1 *= sc.y;
          if (p.shift) v0 += sh.x, v1 += sh.y;
          *reinterpret_cast<float2*>(staged + staging_offset<BN>(row, col)) = make_float2(v0, v1);
        }
    }
    __syncthreads();  // the whole tile is staged
    // Staging tile -> y: chunk id = it*THREADS + tid is (row id / GROUPS,
    // 8-column group t = id % GROUPS). A warp stores 32 x 16 bytes: 4 tile
    // rows of 128 bytes (BN = 64) or 2 of 256 bytes (BN = 128) of y: whole
    // 32-byte sectors when 16 | K and 16 | Kg, as in every ResNet layer (the
    // paired path writes 4 lanes x 4 bytes = 16 bytes per row per
    // instruction: half sectors, completed by a second instruction).
    // The 8 threads of a quarter-warp are one row (GROUPS is 8 or 16): the
    // read order of read_staged8 (epilogue.cuh) is conflict-free for them.
    // THREADS is a multiple of GROUPS, so t = tid % GROUPS in every round
    // (store_staged_rows, epilogue.cuh).
    constexpr int GROUPS = BN / 8;
    const int t = threadIdx.x % GROUPS;
    const int n = n0 + 8 * t;
    if (n >= kg) return;  // 8 | Kg: the group is wholly inside or outside; no barrier follows
    const int k = group * kg + n;
    store_staged_rows<T, BM, BN, Cfg::THREADS>(staged, t, k, m0, M, p.K, y, [&](float(&v)[8], int64_t m) {
      residual_relu8<T>(p, v, k, p.residual ? residual_pixel_offset(p, m) : 0, out.vector_residual);
    });
    return;
  }

  // ---- Paired epilogue straight from registers. Lane l holds rows l/4 and
  // l/4 + 8 and columns 2*(l%4), 2*(l%4)+1 of each m16n8 tile; the column pair
  // is one 32-bit store. NHWC y is the row-major M x K matrix, row m at y + m*K.
#pragma unroll
  for (int i = 0; i < Cfg::MMA_M; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm0 + i * 16 + lane / 4 + half * 8;
      if (m >= M) continue;
      const int64_t res_pixel = p.residual ? residual_pixel_offset(p, m) : 0;
      T* y_row = y + m * p.K;
#pragma unroll
      for (int j = 0; j < Cfg::MMA_N; ++j) {
        const int n = n0 + wn0 + j * 8 + 2 * (lane % 4);
        if (n >= kg) continue;  // kg is even, so n + 1 < kg too
        const int k = group * kg + n;
        const float v0 = epilogue<T>(p, acc[i][j][2 * half], k, res_pixel);
        const float v1 = epilogue<T>(p, acc[i][j][2 * half + 1], k + 1, res_pixel);
        *reinterpret_cast<uint32_t*>(y_row + k) = pack2<T>(v0, v1);
      }
    }
  }
}

template <typename T, typename Cfg>
cudaError_t launch_tile(const ConvParams& p, const GemmOutput& out, int split, cudaStream_t stream) {
  const int kg = p.k_per_group();
  const dim3 grid(unsigned((p.pixels() + Cfg::BM - 1) / Cfg::BM), unsigned((kg + Cfg::BN - 1) / Cfg::BN * p.groups),
                  unsigned(split));
  auto* kernel = implicit_gemm_kernel<T, Cfg>;
  if (Cfg::SMEM_BYTES > 48 * 1024) {  // above the default dynamic shared-memory limit
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM_BYTES);
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, stream>>>(p, out, make_kdecode(p));
  return cudaGetLastError();
}

// The host has validated `plan` against p (launch.cu): an mma.sync plan with
// one of the two tiles, split >= 1, and for split > 1 a 16-byte aligned
// workspace of plan.workspace_bytes.
template <typename T>
cudaError_t launch_implicit_gemm(const ConvParams& p, const ConvPlan& plan, void* workspace, cudaStream_t stream) {
  GemmOutput out{};
  out.partials = plan.split > 1 ? static_cast<float*>(workspace) : nullptr;
  out.vector = plan.split == 1 && plan.vector_output;
  out.vector_residual = plan.vector_residual;
  if (plan.tile_m == LargeTile::BM && plan.tile_n == LargeTile::BN)
    return launch_tile<T, LargeTile>(p, out, plan.split, stream);
  return launch_tile<T, SmallTile>(p, out, plan.split, stream);
}

}  // namespace resnet_kernels
