// Persistent, warp-specialised implicit-GEMM convolution on Hopper tensor
// cores (wgmma + TMA in and out, sm_90a), for the calls whose operands AND
// epilogue tensors all move by TMA (tma_epilogue_ok, tma_map.h).
//
// Same GEMM view, fused contract and shared-memory tile format as
// wgmma_conv.cuh (see its header): D[m][n] = sum_k A[m][k] * B[n][k], A the
// activations (a plain matrix for 1x1 stride-1 calls, WgmmaLoads::kTmaAB, or
// an im2col gather, kTmaIm2col), B the KRSC weights, [rows][64] tiles in the
// 128-byte swizzle, y = relu?(scale*acc + shift + residual). What changes:
//
// - Warp specialisation (wgmma_ws_config.h): warpgroup 0 is the producer, of
//   which thread 0 issues the operand copies and thread 32 the residual
//   copies; warpgroups 1 and 2 are the consumers, each computing 64 rows of
//   the 128 x BN tile. The roles hand work over through mbarriers only -- per
//   ring slot "full" (the copies have landed: one arrival + the bytes) and
//   "empty" (the 8 consumer warps' wgmmas have finished reading it: one
//   arrival per warp after its own wgmma wait) -- so the
//   copies run ahead of the tensor cores by up to STAGES k tiles without any
//   CTA-wide barrier, and the consumers issue no load instructions at all.
//   setmaxnreg moves registers from the producer (40) to the consumers (232).
// - Persistence: one CTA per SM walks the output tiles (tile = blockIdx.x,
//   + gridDim.x, ...; N tiles fastest, so CTAs running together share their
//   A tiles in L2). The producer does not stop at the end of a tile: it goes
//   on loading the next tile's k tiles while the consumers run this tile's
//   epilogue, which the one-tile-per-CTA kernel cannot overlap when only one
//   CTA fits on an SM (its 128x128 and 128x256 tiles).
// - TMA epilogue: the residual (same shape as y, dense NHWC) comes in by TMA,
//   issued by the producer's thread 32 as soon as an epilogue tile is free
//   (the operand copies never wait for one), into an
//   epilogue tile of BM x BN elements in shared memory (BN/64 column blocks
//   of [128][64], 128-byte swizzle, so the consumers' 4-byte accesses are
//   conflict-free, below); each consumer thread finishes its accumulator
//   pairs there in place (scale, shift, residual, ReLU, rounding) and one
//   thread per consumer warpgroup stores its 64 rows with TMA stores. The
//   tensor unit clips the store at the tensor's edges (rows past M, channels
//   past K/groups), so no tail logic exists in the kernel. EPI_BUFFERS
//   epilogue tiles rotate ("epi_full" / "epi_empty" mbarriers, the latter
//   arrived by each storing thread once its store has read the tile).
//
// Phases of a barrier used for the j-th time (j = 0, 1, ...): the waiter of
// "full" waits for parity j % 2; the producer, before the j-th fill, waits for
// the consumers' (j-1)-th release, parity (j-1) % 2 = (j % 2) ^ 1 -- which a
// fresh barrier (phase 0 pending) reports complete at once for j = 0. Both
// roles walk the same tiles and k tiles in the same order, so each keeps its
// own (slot, parity) counters and they agree.
//
// Compiled for sm_90a only (elsewhere the body is __trap(); the host checks
// wgmma_available first, as for wgmma_conv.cuh).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/conv_params.h"
#include "kernels/gather.cuh"
#include "kernels/launch.h"
#include "kernels/numeric.cuh"
#include "kernels/ptx.cuh"
#include "kernels/ptx_sm90.cuh"
#include "kernels/tma_map.h"
#include "kernels/wgmma_ws_config.h"

namespace resnet_kernels {

// The output tile with linear index `tile` of a walk over m_tiles x n_tiles
// tiles, N tiles fastest (n_tiles = n_tiles_g * groups: the tiles of group g
// are g * n_tiles_g .. (g+1) * n_tiles_g - 1).
struct WsTile {
  int64_t m0;  // first output pixel (row of D)
  int n0;      // first output channel within the group
  int group;
};

__device__ __forceinline__ WsTile ws_tile(int64_t tile, int n_tiles, int n_tiles_g, int bm, int bn) {
  const int64_t m_tile = tile / n_tiles;
  const int nt = int(tile - m_tile * n_tiles);
  const int group = nt / n_tiles_g;
  return WsTile{m_tile * bm, (nt - group * n_tiles_g) * bn, group};
}

// map_a: A (LOADS == kTmaAB: tiled, box [128][64]; kTmaIm2col: im2col);
// map_b: the weights (box [BN][64]); map_r: the residual (box [128][64],
// unused without one); map_y: the output (box [64][64]). tma_map.h.
template <typename T, typename Cfg, WgmmaLoads LOADS>
__global__ void __launch_bounds__(Cfg::THREADS, 1)
    wgmma_ws_conv_kernel(const ConvParams p, const __grid_constant__ CUtensorMap map_a,
                         const __grid_constant__ CUtensorMap map_b, const __grid_constant__ CUtensorMap map_r,
                         const __grid_constant__ CUtensorMap map_y) {
#if RESNET_KERNELS_SM90A
  static_assert(both_operands_by_tma(LOADS), "the persistent kernel loads both operands by TMA");
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES, EPI = Cfg::EPI_BUFFERS;
  constexpr int ROW_BYTES = BK * 2;  // 128: one swizzled line per tile row
  constexpr bool IM2COL = LOADS == WgmmaLoads::kTmaIm2col;

  // ---- Shared memory: the ring (STAGES x {A [128][64], B [BN][64]}), then
  // EPI epilogue tiles (COL_BLOCKS x [128][64] each), from a base rounded up
  // to 1024 bytes (the launch reserves the slack).
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw_addr = ptx::smem_addr(smem_raw);
  const uint32_t align_pad = (1024u - (raw_addr & 1023u)) & 1023u;
  const uint32_t smem_base = raw_addr + align_pad;               // shared::cta address
  const uint32_t epi_base = smem_base + STAGES * Cfg::STAGE_BYTES;
  unsigned char* const epi_smem = smem_raw + align_pad + STAGES * Cfg::STAGE_BYTES;  // generic view

  // ---- mbarriers: full[STAGES], empty[STAGES], epi_full[EPI], epi_empty[EPI].
  __shared__ __align__(8) uint64_t bars[2 * STAGES + 2 * EPI];
  const uint32_t full_bar = ptx::smem_addr(bars), empty_bar = full_bar + 8 * STAGES;
  const uint32_t epi_full_bar = empty_bar + 8 * STAGES, epi_empty_bar = epi_full_bar + 8 * EPI;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      ptx::mbarrier_init(full_bar + 8 * s, 1);                 // the producer's arrive.expect_tx
      ptx::mbarrier_init(empty_bar + 8 * s, Cfg::CONSUMERS * 4);  // one release per consumer warp
    }
    for (int e = 0; e < EPI; ++e) {
      ptx::mbarrier_init(epi_full_bar + 8 * e, 1);
      ptx::mbarrier_init(epi_empty_bar + 8 * e, Cfg::CONSUMERS);
    }
    ptx::fence_mbarrier_init();
    ptx::prefetch_tensormap(&map_a);
    ptx::prefetch_tensormap(&map_b);
    if (p.residual) ptx::prefetch_tensormap(&map_r);
    ptx::prefetch_tensormap(&map_y);
  }
  __syncthreads();  // the last CTA-wide barrier: the barriers exist before anyone waits on them

  const int cg = p.c_per_group(), kg = p.k_per_group();
  const int k_tiles = (p.gemm_k() + BK - 1) / BK;
  const int n_tiles_g = (kg + BN - 1) / BN, n_tiles = n_tiles_g * p.groups;
  const int64_t tiles = (p.pixels() + BM - 1) / BM * n_tiles;
  const int wg = threadIdx.x / 128;

  // Column blocks of a tile's epilogue tile that hold channels of the group
  // (n0 + 64b < Kg): the residual copies and the output stores skip the others
  // (a narrow group, Kg < BN, would otherwise move whole boxes of nothing).
  auto live_blocks = [&](int n0) { return min(Cfg::COL_BLOCKS, (kg - n0 + 63) / 64); };

  if (wg == 0) {
    // ================= Producer warpgroup: thread 0 issues the operand copies,
    // thread 32 (warp 1) the residual copies, each walking the tiles on its own
    // so that waiting for an epilogue tile never holds back the operands.
    ptx::setmaxnreg_dec<Cfg::PRODUCER_REGS>();
    if (threadIdx.x == 0) {
      const KStep kstep = make_kstep<BK>(p, cg);
      uint32_t slot = 0, phase = 0;
      for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const WsTile t = ws_tile(tile, n_tiles, n_tiles_g, BM, BN);
        // im2col: the copy starts at the input position of the tile's first
        // pixel's top-left tap and adds the tap offsets of each k tile; the
        // reduction position (tap, channel) of k tile kt is stepped from k = 0
        // (64 | Cg: a k tile is 64 channels of one tap).
        Im2colStart a_start{0, 0, 0};
        if constexpr (IM2COL) a_start = im2col_start(p, t.m0);
        KPos kp{0, 0, 0, 0};
        for (int kt = 0; kt < k_tiles; ++kt) {
          const uint32_t full = full_bar + 8 * slot, dst = smem_base + slot * Cfg::STAGE_BYTES;
          ptx::mbarrier_wait(empty_bar + 8 * slot, phase ^ 1);  // every consumer warp is done with the slot's last tile
          ptx::mbarrier_arrive_expect_tx(full, Cfg::STAGE_BYTES);  // whole boxes, zero-filled parts included
          if constexpr (IM2COL) {
            ptx::tma_load_im2col_4d(dst, &map_a, full, t.group * cg + kp.c, a_start.w, a_start.h, a_start.n,
                                    uint16_t(kp.dw), uint16_t(kp.dh));
            advance_kpos<BK>(kp, kstep, p, cg);
          } else {
            ptx::tma_load_3d(dst, &map_a, full, kt * BK, t.group, int(t.m0));
          }
          ptx::tma_load_3d(dst + Cfg::A_BYTES, &map_b, full, kt * BK, t.n0, t.group);
          if (++slot == STAGES) slot = 0, phase ^= 1;
        }
      }
    } else if (threadIdx.x == 32) {
      // Each tile's epilogue tile, free once both consumers' stores of the
      // tile EPI tiles back have read it: with a residual, its copy fills the
      // tile's live column blocks; without, a plain arrival hands it over.
      uint32_t ebuf = 0, ephase = 0;
      for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const WsTile t = ws_tile(tile, n_tiles, n_tiles_g, BM, BN);
        const uint32_t epi_full = epi_full_bar + 8 * ebuf;
        ptx::mbarrier_wait(epi_empty_bar + 8 * ebuf, ephase ^ 1);
        if (p.residual) {
          const int blocks = live_blocks(t.n0);
          ptx::mbarrier_arrive_expect_tx(epi_full, uint32_t(blocks) * Cfg::EPI_BLOCK_BYTES);
          for (int b = 0; b < blocks; ++b)
            ptx::tma_load_3d(epi_base + ebuf * Cfg::EPI_BYTES + b * Cfg::EPI_BLOCK_BYTES, &map_r, epi_full,
                             t.n0 + 64 * b, t.group, int(t.m0));
        } else {
          ptx::mbarrier_arrive(epi_full);
        }
        if (++ebuf == EPI) ebuf = 0, ephase ^= 1;
      }
    }
  } else {
    // ================= Consumer warpgroups: c = 0, 1 computes rows 64c .. 64c+63.
    ptx::setmaxnreg_inc<Cfg::CONSUMER_REGS>();
    const int c = wg - 1, ctid = threadIdx.x % 128;
    const int lane = threadIdx.x % 32, warp = ctid / 32;

    // Descriptors of this warpgroup's A rows and of B (ptx::StageDescriptors).
    const ptx::StageDescriptors descs(raw_addr, smem_base + uint32_t(c) * Cfg::WG_ROWS * ROW_BYTES,
                                      smem_base + Cfg::A_BYTES);

    float acc[Cfg::ACC];
#pragma unroll
    for (int i = 0; i < Cfg::ACC; ++i) acc[i] = 0.f;  // defined values; each tile's first wgmma overwrites them
    uint32_t slot = 0, phase = 0, ebuf = 0, ephase = 0;
    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const WsTile t = ws_tile(tile, n_tiles, n_tiles_g, BM, BN);

      // ---- Main loop: wait for the slot, 4 x k16 wgmma as one group, keep
      // one group in flight, release the slot of the group that completed.
      uint32_t prev = 0;
      for (int kt = 0; kt < k_tiles; ++kt) {
        ptx::mbarrier_wait(full_bar + 8 * slot, phase);  // the TMA bytes of k tile kt are in the slot
        const uint32_t stage_lo = slot * uint32_t(Cfg::STAGE_BYTES >> 4);
        ptx::fence_operands(acc);  // the previous tile's epilogue reads of acc stay before
        ptx::wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < BK / 16; ++ks) {
          // scale_d = 0 on the tile's first step: D = A*B, no zeroing per tile.
          ptx::Wgmma<T, BN>::mma(acc, descs.a(stage_lo, ks), descs.b(stage_lo, ks), (kt | ks) != 0 ? 1 : 0);
        }
        ptx::wgmma_commit_group();
        // k tile kt-1's group is done reading its slot, as far as this warp can
        // tell: each warp releases the slot itself after its own wait (8
        // arrivals), not one thread for its warpgroup, so no warp's reads can
        // still be pending when the producer refills it.
        ptx::wgmma_wait_group<1>();
        if (kt > 0 && lane == 0) ptx::mbarrier_arrive(empty_bar + 8 * prev);
        prev = slot;
        if (++slot == STAGES) slot = 0, phase ^= 1;
      }
      ptx::wgmma_wait_group<0>();
      ptx::fence_operands(acc);  // the epilogue's reads of acc stay after the wait
      if (lane == 0) ptx::mbarrier_arrive(empty_bar + 8 * prev);

      // ---- Epilogue in the epilogue tile: residual in (if any), output out.
      ptx::mbarrier_wait(epi_full_bar + 8 * ebuf, ephase);  // free, and the residual has landed
      unsigned char* const cells = epi_smem + ebuf * Cfg::EPI_BYTES;
      // y = relu?(scale * acc + shift + residual) with an absent scale as 1 and
      // an absent shift as 0 (exact: no select per element), and the ReLU as a
      // floor of 0 or -inf (v < floor is false for NaN, which stays, as in
      // relu_keep_nan).
      const float relu_floor = p.relu ? 0.f : -INFINITY;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        // Channels n, n+1 of the group (kg even, so both or neither < kg; the
        // store clips columns >= kg, their values do not matter).
        const int n = t.n0 + 8 * j + 2 * (lane % 4);
        const int k = t.group * kg + n;
        const bool in = n < kg;
        float2 sc = make_float2(1.f, 1.f), sh = make_float2(0.f, 0.f);
        if (p.scale && in) sc = __ldg(reinterpret_cast<const float2*>(p.scale + k));  // k even, 16-byte aligned vector
        if (p.shift && in) sh = __ldg(reinterpret_cast<const float2*>(p.shift + k));
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          // This thread's pair in the tile (wgmma_ws_config.h: conflict-free 4-byte accesses).
          uint32_t* cell = reinterpret_cast<uint32_t*>(cells + ws_pair_offset(c, warp, lane, j, half));
          float v0 = acc[4 * j + 2 * half] * sc.x + sh.x, v1 = acc[4 * j + 2 * half + 1] * sc.y + sh.y;
          if (p.residual) {
            const float2 r = unpack2<T>(*cell);
            v0 += r.x, v1 += r.y;
          }
          v0 = v0 < relu_floor ? relu_floor : v0;
          v1 = v1 < relu_floor ? relu_floor : v1;
          *cell = pack2<T>(v0, v1);
        }
      }
      // Generic-proxy writes, read next by the tensor unit (async proxy): each
      // thread fences its own, the warpgroup's barrier gathers them, then one
      // thread stores the warpgroup's 64 rows (one [64][64] box per column
      // block, at rows m0 + 64c) and hands the tile back once they are read.
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_sync(1 + c, 128);
      if (ctid == 0) {
        const uint32_t src = epi_base + ebuf * Cfg::EPI_BYTES + uint32_t(c) * Cfg::WG_ROWS * ROW_BYTES;
        const int blocks = live_blocks(t.n0);
        for (int b = 0; b < blocks; ++b)
          ptx::tma_store_3d(&map_y, src + b * Cfg::EPI_BLOCK_BYTES, t.n0 + 64 * b, t.group,
                            int(t.m0) + c * Cfg::WG_ROWS);
        ptx::bulk_commit_group();
        ptx::bulk_wait_group_read<0>();
        ptx::mbarrier_arrive(epi_empty_bar + 8 * ebuf);
      }
      if (++ebuf == EPI) ebuf = 0, ephase ^= 1;
    }
  }
#else
  __trap();  // not sm_90a code (the host checks wgmma_available first)
#endif
}

template <typename T, typename Cfg, WgmmaLoads LOADS>
cudaError_t launch_wgmma_ws_tile(const ConvParams& p, int device, cudaStream_t stream) {
  int num_sms = 0;
  cudaError_t err = multiprocessor_count(device, &num_sms);
  if (err != cudaSuccess) return err;
  const int kg = p.k_per_group();
  const int64_t tiles = (p.pixels() + Cfg::BM - 1) / Cfg::BM * ((kg + Cfg::BN - 1) / Cfg::BN) * p.groups;
  const unsigned grid = unsigned(std::min<int64_t>(tiles, num_sms));  // one CTA per SM at most
  constexpr bool bf16 = std::is_same<T, __nv_bfloat16>::value;
  CUtensorMap map_a{}, map_b{}, map_r{}, map_y{};  // map_r stays zero without a residual
  err = encode_weight_map(p, bf16, Cfg::BN, &map_b);
  if (err == cudaSuccess)
    err = LOADS == WgmmaLoads::kTmaAB ? encode_gemm_input_map(p, bf16, Cfg::BM, &map_a)
                                      : encode_im2col_input_map(p, bf16, Cfg::BM, &map_a);
  if (err == cudaSuccess && p.residual != nullptr) err = encode_output_map(p, bf16, p.residual, Cfg::BM, &map_r);
  if (err == cudaSuccess) err = encode_output_map(p, bf16, p.y, Cfg::WG_ROWS, &map_y);
  if (err != cudaSuccess) return err;
  auto* kernel = wgmma_ws_conv_kernel<T, Cfg, LOADS>;
  // setmaxnreg only moves registers within the CTA's allocation (THREADS x the
  // count the kernel was compiled with): the consumers' 232 must fit next to
  // the producer's 40, i.e. at least 168 per thread at entry, or their
  // setmaxnreg.inc would wait forever. nvcc 13.0 compiles exactly 168 (the
  // 384-thread cap); another toolchain might not. Queried once per instance.
  static const cudaError_t registers_ok = [kernel] {
    cudaFuncAttributes attr{};
    const cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
    if (e != cudaSuccess) return e;
    constexpr int kNeeded = 128 * Cfg::PRODUCER_REGS + 256 * Cfg::CONSUMER_REGS;
    return attr.numRegs * Cfg::THREADS >= kNeeded ? cudaSuccess : cudaErrorInvalidDeviceFunction;
  }();
  if (registers_ok != cudaSuccess) return registers_ok;
  err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM_BYTES);
  if (err != cudaSuccess) return err;
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, stream>>>(p, map_a, map_b, map_r, map_y);
  return cudaGetLastError();
}

template <typename T, typename Cfg>
cudaError_t launch_wgmma_ws_loads(const ConvParams& p, WgmmaLoads loads, int device, cudaStream_t stream) {
  switch (loads) {
    case WgmmaLoads::kTmaAB:
      return launch_wgmma_ws_tile<T, Cfg, WgmmaLoads::kTmaAB>(p, device, stream);
    case WgmmaLoads::kTmaIm2col:
      return launch_wgmma_ws_tile<T, Cfg, WgmmaLoads::kTmaIm2col>(p, device, stream);
    default:
      return cudaErrorInvalidValue;  // the persistent kernel loads both operands by TMA
  }
}

// The host has validated `plan` against p (plan_fits): a persistent wgmma
// plan, loads kTmaAB or kTmaIm2col, tma_epilogue_ok(p).
template <typename T>
cudaError_t launch_wgmma_ws_conv(const ConvParams& p, const ConvPlan& plan, cudaStream_t stream) {
  int device = 0;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  if (!wgmma_available(device)) return cudaErrorInvalidDeviceFunction;  // the kernel would trap
  switch (plan.kernel) {
    case KernelChoice::kWgmmaN64:
      return launch_wgmma_ws_loads<T, WgmmaWsTileN64>(p, plan.loads, device, stream);
    case KernelChoice::kWgmmaN128:
      return launch_wgmma_ws_loads<T, WgmmaWsTileN128>(p, plan.loads, device, stream);
    case KernelChoice::kWgmmaN256:
      return launch_wgmma_ws_loads<T, WgmmaWsTileN256>(p, plan.loads, device, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace resnet_kernels
