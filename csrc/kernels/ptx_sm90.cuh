// Thin wrappers over the sm_90a PTX of the Hopper tensor-core kernel (wgmma_conv.cuh):
// wgmma.mma_async with both operands in shared memory (matrix descriptors), its
// fence / commit / wait, and the generic-to-async proxy fence.
//
// wgmma is an "architecture-specific" feature: it exists only in sm_90a code
// (nvcc -arch=sm_90a / TORCH_CUDA_ARCH_LIST=9.0a defines __CUDA_ARCH_FEAT_SM90_ALL;
// plain sm_90 does not, and ptxas rejects wgmma there). Everything below is
// compiled only in that pass; RESNET_KERNELS_SM90A tells the kernel whether it is.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RESNET_KERNELS_SM90A 1
#else
#define RESNET_KERNELS_SM90A 0
#endif

#if RESNET_KERNELS_SM90A

namespace resnet_kernels::ptx {

// ---- Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format" of
// the asynchronous warpgroup-level matrix instructions). 64 bits:
//   bits  0-13  matrix start address  >> 4   (shared::cta byte address)
//   bits 16-29  leading dimension byte offset (LBO) >> 4
//   bits 32-45  stride dimension byte offset  (SBO) >> 4
//   bits 49-51  matrix base offset (for a swizzle pattern not starting at a
//               pattern-repeat boundary; 0 here, see below)
//   bits 62-63  swizzle mode: 0 none (interleaved), 1 = 128-byte, 2 = 64-byte, 3 = 32-byte
//
// Operand layout used by the kernel ("K-major", no transpose: A is [M][K] and
// B is [N][K], k contiguous, which is what wgmma calls row-major A and
// column-major B): a tile of R rows by 64 fp16/bf16 k elements, one 128-byte
// line per row, in the 128-byte swizzle:
//     byte(row, k) = row * 128 + (((k / 8) ^ (row % 8)) * 16) + (k % 8) * 2
// i.e. the 16-byte chunk index (address bits 4-6) is XOR-ed with the row
// within an 8-row group (address bits 7-9). The hardware applies this XOR to
// the address bits it generates, so the tile must start at a 1024-byte
// boundary (the 8 x 128-byte repeat of the pattern), which makes
// (row % 8) == address bits 7-9 and the base offset field 0.
//
// A wgmma with k16 reads, per row, the 32 bytes of k = 16*ks .. 16*ks + 15, as
// "core matrices" of 8 rows x 16 bytes:
//   - along M/N, core matrices (8-row groups) are SBO = 8 * 128 = 1024 bytes apart;
//   - along K, the two 16-byte halves of the k16 step lie inside the same
//     128-byte swizzled line; the ISA's stride table says the leading
//     dimension byte offset of K-major swizzled layouts is "not used, assumed
//     to be 1", so the field holds 1 (16 bytes >> 4).
//   - step ks inside the 64-element line starts 32 * ks bytes further: the
//     start address moves by 32 * ks (bits 4-6 then hold 2*ks + half, bits 7-9
//     the row, exactly the XOR inputs of the store formula above), and the
//     base offset stays 0 because 32 * ks < 128 leaves bits 7-9 of the start
//     address untouched.
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t smem_byte_addr) {
  constexpr uint64_t kLbo = 1;            // not used for swizzled K-major ("assumed to be 1")
  constexpr uint64_t kSbo = 1024 >> 4;    // 8 rows x 128 bytes between 8-row core-matrix groups
  constexpr uint64_t kSwizzle128 = 1;     // bits 62-63
  return uint64_t((smem_byte_addr & 0x3FFFF) >> 4) | (kLbo << 16) | (kSbo << 32) | (kSwizzle128 << 62);
}

// A byte offset added to the start-address field of a descriptor (offset a
// multiple of 16; the field cannot overflow because every shared address is
// below 2^18 and the sum stays a valid address).
__device__ __forceinline__ uint64_t desc_advance(uint64_t desc, uint32_t bytes) { return desc + (bytes >> 4); }

// A value that is the same in every lane of the warp (the caller's promise),
// returned as lane 0's copy. The shuffle makes the uniformity visible to
// ptxas, which can then keep the value and what is computed from it in
// uniform registers (the operand registers of wgmma's descriptors) instead
// of moving it over from an ordinary register at every use.
__device__ __forceinline__ uint32_t warp_uniform(uint32_t v) { return __shfl_sync(0xffffffffu, v, 0); }

// The descriptor pairs of one warpgroup's wgmmas over a ring of stages, as
// four warp-uniform 32-bit words: A's rows of the warpgroup start at a_addr,
// B's at b_addr (both in ring slot 0, shared::cta addresses); a(stage_lo, ks)
// / b(stage_lo, ks) are the descriptors of k16 step ks (32 bytes further per
// step) in the slot stage_lo (its byte offset >> 4) further on. (Summed base +
// slot + step in that order: ptxas then adds the slot to each base once per k
// tile and the step as an immediate; a precomputed slot + step costs six
// more uniform instructions per k tile.)
//
// Only the start-address field (bits 0-13 of the low word) changes between
// stages and k16 steps. Every shared address is below 2^18, so adding
// (offset >> 4) to the low word never carries out of that field: the k loop
// works on 32-bit low words and pairs them with the constant high word (SBO
// and swizzle mode, 0x40000040).
//
// wgmma takes its descriptors in uniform registers (one value per warp).
// Three things keep their per-tile cost at one uniform add per descriptor
// (after one multiply-add per operand for the slot) instead of ~6 moves per
// wgmma:
// - the A base depends on the warpgroup, i.e. on threadIdx, which ptxas
//   treats as per-thread: it computed every A descriptor in ordinary
//   registers and moved it over (R2UR) before each wgmma. The value is the
//   same in all lanes of a warp; warp_uniform says so (a shuffle from lane
//   0), so ptxas keeps it and what the loop derives from it in uniform
//   registers;
// - ptxas re-created a constant high word in the upper register of each
//   descriptor pair before every wgmma instead of leaving it there. A high
//   word that is not a compile-time constant stays: each operand's is the
//   constant OR-ed with a run-time zero, raw_addr >> 30 and raw_addr >> 31
//   (raw_addr, any shared::cta address of the CTA, is below 2^18), two
//   different expressions so that ptxas cannot merge them into one register
//   that it would copy into the other pair for every wgmma;
// - the four loop-invariant values go through warp_uniform: a shuffle result
//   is kept in its register across the loop, where ptxas otherwise
//   recomputed the bases and high words from the shared-memory base every k
//   tile (it did once the kernel's uniform registers got scarcer).
struct StageDescriptors {
  uint32_t hi_a, hi_b, a_lo, b_lo;

  __device__ __forceinline__ StageDescriptors(uint32_t raw_addr, uint32_t a_addr, uint32_t b_addr) {
    const uint32_t hi = uint32_t(smem_desc_sw128(0) >> 32);
    hi_a = warp_uniform(hi | (raw_addr >> 30));
    hi_b = warp_uniform(hi | (raw_addr >> 31));
    a_lo = warp_uniform(uint32_t(smem_desc_sw128(a_addr)));
    b_lo = warp_uniform(uint32_t(smem_desc_sw128(b_addr)));
  }
  __device__ __forceinline__ uint64_t a(uint32_t stage_lo, int ks) const {
    return (uint64_t(hi_a) << 32) | (a_lo + stage_lo + uint32_t(ks) * 2);
  }
  __device__ __forceinline__ uint64_t b(uint32_t stage_lo, int ks) const {
    return (uint64_t(hi_b) << 32) | (b_lo + stage_lo + uint32_t(ks) * 2);
  }
};

// ---- Ordering.

// Makes this thread's prior generic-proxy writes to shared memory (cp.async
// copies it has waited for, st.shared of the prologue) visible to later
// async-proxy reads (wgmma operands). A CTA barrier after it extends that to
// the wgmmas of every warp.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Orders prior register accesses (of the accumulators) and shared-memory
// accesses of the warpgroup before the wgmma.mma_async that follow.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Closes the wgmma.mma_async issued since the previous commit into one group.
__device__ __forceinline__ void wgmma_commit_group() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Waits until at most N committed wgmma groups of this warpgroup are pending:
// the others have finished reading shared memory and writing accumulators.
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// An empty asm that claims to read and write v: the compiler can neither move
// an access of v across it nor keep a copy of v across it. Placed around the
// wgmma region (before wgmma_fence, after wgmma_wait_group) on every
// accumulator, it keeps the C++-level accesses (zero-initialisation,
// epilogue reads) on the right side of the asynchronous accumulation.
__device__ __forceinline__ void fence_operand(float& v) { asm volatile("" : "+f"(v)::"memory"); }

template <int N>
__device__ __forceinline__ void fence_operands(float (&v)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) fence_operand(v[i]);
}

// ---- Tensor memory accelerator (TMA) and the shared-memory barriers (mbarrier)
// its copies complete on.
//
// A TMA copy is issued by one thread with the address of a CUtensorMap (a
// 128-byte descriptor of a global tensor: element type, sizes, byte strides,
// the box one copy moves, the shared-memory swizzle; built on the host,
// passed as a __grid_constant__ kernel parameter) and the coordinates of the
// box's first element. The tensor unit writes the box to shared memory in the
// map's swizzle, zero-filling elements outside the tensor, and then counts
// the box's bytes (ALL of them, zero-filled ones included) as completed
// transactions on an mbarrier. An mbarrier phase completes when its expected
// arrivals have arrived AND its expected transaction bytes have completed;
// a thread that sees the phase complete (try_wait.parity) also sees the
// copied data.

// Barrier in shared memory (8 bytes, 8-byte aligned) expecting `count`
// arrivals per phase; its current phase has parity 0.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Makes the initialisation of mbarriers visible to the async proxy (the
// tensor unit that completes transactions on them); a CTA barrier after it
// extends it to the other threads.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival on `bar` that also raises the transaction bytes the current
// phase waits for by `bytes` (the copies issued next will complete them).
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

// Whether the phase of parity `parity` of `bar` has completed (the hardware
// may suspend the thread a while before answering no).
__device__ __forceinline__ bool mbarrier_try_wait(uint32_t bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}

// Waits for the phase of parity `parity` of `bar`. A copy that never
// completes its bytes (a byte count that does not match the boxes issued)
// would leave every thread here forever and hang the process; past 2^26
// unanswered polls (each try_wait may suspend the thread for a while, so
// well over a second of spinning, and a preempted context does not poll)
// the thread traps instead, which ends the kernel with a launch failure the
// host reports. A legitimate wait is a few microseconds.
__device__ __forceinline__ void mbarrier_wait(uint32_t bar, uint32_t parity) {
  uint32_t polls = 0;
  while (!mbarrier_try_wait(bar, parity)) {
    if (++polls == (1u << 26)) __trap();
  }
}

// Loads the tensor map's 128 bytes into the descriptor cache ahead of the
// first copy that uses it (`map`: generic address of a __grid_constant__ parameter).
__device__ __forceinline__ void prefetch_tensormap(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// TMA copy of the box at coordinates (c0, c1, c2) (innermost first, in
// elements; may lie partly or wholly outside the tensor: zero-filled) of the
// rank-3 tensor `map` to shared memory at `dst` (shared::cta address,
// 1024-byte aligned for the 128-byte swizzle), completing its bytes on `bar`.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const void* map, uint32_t bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

// TMA copy in im2col mode from the rank-4 (C, W, H, N) map `map`: channels
// c .. c + channelsPerPixel - 1 of pixelsPerColumn consecutive pixels of the
// map's bounding box, starting at (w, h, n) and walking W, then H, then N
// with the map's traversal strides, each pixel shifted by the tap offsets
// (off_w, off_h) (16-bit operands); pixels outside the tensor are zero-filled.
__device__ __forceinline__ void tma_load_im2col_4d(uint32_t dst, const void* map, uint32_t bar, int c, int w, int h,
                                                   int n, uint16_t off_w, uint16_t off_h) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
      "%5}], [%6], {%7, %8};\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c), "r"(w), "r"(h), "r"(n), "r"(bar), "h"(off_w), "h"(off_h)
      : "memory");
}

// One plain arrival on `bar` (no transaction bytes). Release semantics at CTA
// scope: this thread's earlier memory accesses (and, after a wgmma wait, the
// completed shared-memory reads of its warpgroup's wgmmas) happen before
// whatever a thread that then sees the phase complete does.
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// TMA store of the box at coordinates (c0, c1, c2) of the rank-3 tensor `map`
// from shared memory at `src` (shared::cta address, laid out in the map's
// swizzle, 1024-byte aligned for the 128-byte swizzle). Elements of the box
// outside the tensor are not written. Part of this thread's current bulk
// group (bulk_commit_group); the shared memory may be reused once
// bulk_wait_group_read says the group has read it.
__device__ __forceinline__ void tma_store_3d(const void* map, uint32_t src, int c0, int c1, int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(src), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}

// Closes this thread's bulk copies (TMA stores) issued since the last commit into one group.
__device__ __forceinline__ void bulk_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's bulk groups still have to READ their
// shared-memory source (their global writes may still be under way).
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

// Barrier `id` (1..15; 0 is __syncthreads') among `count` threads (a multiple
// of 32), e.g. the 128 threads of one warpgroup: orders their shared-memory
// accesses like __syncthreads without stopping the rest of the CTA.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// Register reallocation between the warpgroups of a warp-specialised kernel
// (the whole warpgroup executes it): dec gives registers back down to N per
// thread, inc waits until N per thread are free and takes them. N is a
// multiple of 8 in 24..256; the kernel needs a register cap at entry
// (__launch_bounds__ with a minimum of 1 block per SM).
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ---- wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}: D (+)= A * B^T for
// one warpgroup (128 threads), A = 64 x 16 and B = N x 16 both K-major in
// shared memory via descriptors, fp32 accumulators in registers. scale_d == 0
// ignores D's old value (D = A * B): wgmma_conv.cuh always passes 1 (D is
// zeroed before the first step), wgmma_ws_conv.cuh passes 0 on each output
// tile's first step. imm-scale-a/b = 1 (no negation), imm-trans-a/b = 0 (K-major).
//
// Accumulator fragment (PTX ISA, wgmma .m64nNk16 D register layout): warp w
// (0-3) of the warpgroup owns rows 16w .. 16w+15; lane l holds, for each
// 8-column block j (0 .. N/8-1),
//   d[4j + 0], d[4j + 1]: row 16w + l/4,     columns 8j + 2(l%4) + {0, 1}
//   d[4j + 2], d[4j + 3]: row 16w + l/4 + 8, the same columns.
// The "+f" operands of accumulators d[i] .. d[i + 7] and d[i] .. d[i + 31].
#define RESNET_KERNELS_D8(i) \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define RESNET_KERNELS_D32(i) \
  RESNET_KERNELS_D8(i), RESNET_KERNELS_D8(i + 8), RESNET_KERNELS_D8(i + 16), RESNET_KERNELS_D8(i + 24)

// m64n64k16: 32 accumulators per thread; operands %0-%31 = d, %32 = desc_a, %33 = desc_b,
// %34 = scale_d (turned into the predicate p).
#define RESNET_KERNELS_WGMMA_M64N64K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
      : RESNET_KERNELS_D32(0) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

// m64n128k16: 64 accumulators per thread; operands %0-%63 = d, %64 = desc_a, %65 = desc_b,
// %66 = scale_d (turned into the predicate p).
#define RESNET_KERNELS_WGMMA_M64N128K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
      : RESNET_KERNELS_D32(0), RESNET_KERNELS_D32(32) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

// m64n256k16: 128 accumulators per thread; operands %0-%127 = d, %128 = desc_a, %129 = desc_b,
// %130 = scale_d (turned into the predicate p).
#define RESNET_KERNELS_WGMMA_M64N256K16(TYPE) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
      "}, %128, %129, p, 1, 1, 0, 0;\n}\n" \
      : RESNET_KERNELS_D32(0), RESNET_KERNELS_D32(32), RESNET_KERNELS_D32(64), RESNET_KERNELS_D32(96) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

// Wgmma<T, N>::mma: one m64nNk16 step for element type T (__half or
// __nv_bfloat16); the PTX type name is a string literal in the asm, hence the
// branch per type.
template <typename T, int N>
struct Wgmma;

template <typename T>
struct Wgmma<T, 64> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    if constexpr (std::is_same<T, __half>::value) {
      RESNET_KERNELS_WGMMA_M64N64K16("f16");
    } else {
      RESNET_KERNELS_WGMMA_M64N64K16("bf16");
    }
  }
};
template <typename T>
struct Wgmma<T, 128> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    if constexpr (std::is_same<T, __half>::value) {
      RESNET_KERNELS_WGMMA_M64N128K16("f16");
    } else {
      RESNET_KERNELS_WGMMA_M64N128K16("bf16");
    }
  }
};
template <typename T>
struct Wgmma<T, 256> {
  static __device__ __forceinline__ void mma(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    if constexpr (std::is_same<T, __half>::value) {
      RESNET_KERNELS_WGMMA_M64N256K16("f16");
    } else {
      RESNET_KERNELS_WGMMA_M64N256K16("bf16");
    }
  }
};

#undef RESNET_KERNELS_WGMMA_M64N64K16
#undef RESNET_KERNELS_WGMMA_M64N128K16
#undef RESNET_KERNELS_WGMMA_M64N256K16
#undef RESNET_KERNELS_D32
#undef RESNET_KERNELS_D8

}  // namespace resnet_kernels::ptx

#endif  // RESNET_KERNELS_SM90A
