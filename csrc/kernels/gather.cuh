// The reduction position of the implicit-GEMM gather, shared by the mma.sync
// (implicit_gemm.cuh) and wgmma (wgmma_conv.cuh) kernels.
//
// A loader thread copies one fixed 16-byte chunk column of every k tile, so
// its k index in tile kt is kt*BK + 8*chunk, i.e. the reduction position
//   k = (r*S + s)*Cg + c    (c fastest; 8 | Cg, so a chunk never straddles taps).
// Decoding k into (r, s, c) takes two divisions by run-time values (Cg, S):
// ~25 instructions each as integer divisions in SASS (no hardware divider),
// ~4 each as a multiply-high by a constant the launcher computes (FastDiv
// below), which is what decode_kpos does. The loaders decode once, where a
// thread's range of k tiles starts, and then step the position by one k tile
// with two compare-and-subtract carries (cheaper still, and it needs no
// multiply); the prologue, which trails the loads by a few tiles, decodes
// its tile's position with decode_kpos. The stepping:
//   BK = dq*Cg + dr (0 <= dr < Cg),  dq = dqr*S + dqs (0 <= dqs < S);
//   c += dr;        if c >= Cg: c -= Cg, s += 1      (c + dr < 2*Cg: one carry)
//   s += dqs;       if s >= S:  s -= S,  r += 1      (s + dqs + 1 < 2*S: one carry)
//   r += dqr.
// dq, dr, dqr, dqs depend only on the launch's parameters (per-CTA constants
// computed once). The position keeps the tap's input offsets dh = r*dil_h and
// dw = s*dil_w rather than r and s (the padding check and the address need
// only those), so s >= S becomes dw >= S*dil_w. Past the last tap (k >=
// gemm_k) the position keeps stepping harmlessly: r >= R, and every user
// checks k < gemm_k first.
#pragma once

#include <climits>
#include <cstdint>

#include "kernels/conv_params.h"
#include "kernels/numeric.cuh"
#include "kernels/ptx.cuh"

namespace resnet_kernels {

struct KPos {
  int k;       // flat reduction index of this thread's chunk: valid while k < gemm_k
  int c;       // channel within the group (a multiple of 8)
  int dh, dw;  // input offsets of tap (r, s): r*dil_h, s*dil_w
};

// Per-CTA constants of one BK step of a KPos.
struct KStep {
  int dc;      // dr: channel advance
  int dw, dh;  // dqs*dil_w, dqr*dil_h: tap advance without carries
  int span_w;  // S*dil_w: where dw wraps to the next filter row
};

// Division by a run-time divisor without a divide sequence: for
// 0 <= n < 2^31 and 1 <= d < 2^31, with l = ceil(log2 d) and
// mul = ceil(2^(31+l) / d),
//   n / d == floor(n * mul / 2^(31+l)) == umulhi(2n, mul) >> l.
// Why: mul*d = 2^(31+l) + e with 0 <= e < d <= 2^l, so
//   n*mul / 2^(31+l) = n/d + e*n / (d * 2^(31+l)),  and the error term is
//   < 2^l * 2^31 / (d * 2^(31+l)) = 1/d;
// n/d = q + rem/d with rem <= d-1, so the sum stays below q + 1 and its floor
// is q. mul < 2^32: for d a power of two mul = 2^31, otherwise 2^(l-1) < d and
// 2^(31+l)/d < 2^32 (rounded up: still below it, d > 2^(l-1) being an
// integer). 2n < 2^32 fits the 32-bit multiply, and floor(floor(x / 2^32) /
// 2^l) = floor(x / 2^(32+l)). Computed on the host once per launch; in the
// kernel it is one IMAD.HI and one shift (both operands uniform), where the
// division was an ~25-instruction I2F/MUFU.RCP/IMAD.HI sequence.
struct FastDiv {
  uint32_t mul;
  uint32_t shift;  // l
};

inline FastDiv make_fast_div(int d) {
  if (d < 1) return FastDiv{0, 0};  // not a divisor the kernels are launched with (8 | Cg, S >= 1)
  uint32_t l = 0;
  while ((uint64_t(1) << l) < uint64_t(d)) ++l;
  const uint64_t mul = ((uint64_t(1) << (31 + l)) + uint64_t(d) - 1) / uint64_t(d);
  return FastDiv{uint32_t(mul), l};
}

// n / d for 0 <= n < 2^31 (see FastDiv).
__device__ __forceinline__ int fast_div(int n, const FastDiv& f) {
  return int(__umulhi(uint32_t(n) << 1, f.mul) >> f.shift);
}

// The two divisors of the reduction position: Cg (k -> tap, channel) and S
// (tap -> filter row, column). A kernel argument next to ConvParams, filled
// by the launchers (make_kdecode), so the op and the tests that fill
// ConvParams are unchanged.
struct KDecode {
  FastDiv cg, s;
};

inline KDecode make_kdecode(const ConvParams& p) { return KDecode{make_fast_div(p.c_per_group()), make_fast_div(p.S)}; }

// The position of reduction index k (0 <= k < 2^31; any k, also past gemm_k):
// the same values as k / Cg and rs / S would give, without a divide sequence.
__device__ __forceinline__ KPos decode_kpos(const ConvParams& p, const KDecode& kd, int cg, int k) {
  const int rs = fast_div(k, kd.cg);
  const int r = fast_div(rs, kd.s);
  return KPos{k, k - rs * cg, r * p.dil_h, (rs - r * p.S) * p.dil_w};
}

template <int BK>
__device__ __forceinline__ KStep make_kstep(const ConvParams& p, int cg) {
  const int dq = BK / cg, dqr = dq / p.S;
  return KStep{BK - dq * cg, (dq - dqr * p.S) * p.dil_w, dqr * p.dil_h, p.S * p.dil_w};
}

// kp <- the position of the same chunk one k tile (BK elements) later.
template <int BK>
__device__ __forceinline__ void advance_kpos(KPos& kp, const KStep& st, const ConvParams& p, int cg) {
  kp.k += BK;
  kp.c += st.dc;
  kp.dw += st.dw;
  kp.dh += st.dh;
  if (kp.c >= cg) {  // channel carry into the next tap
    kp.c -= cg;
    kp.dw += p.dil_w;
  }
  if (kp.dw >= st.span_w) {  // tap carry into the next filter row
    kp.dw -= st.span_w;
    kp.dh += p.dil_h;
  }
}

// A row of the implicit GEMM: output pixel m = (n, op, oq). The input position
// (h0, w0) of its tap (0, 0) and the byte address of x[n, h0, w0, g*Cg], as an
// integer (for a padded position it lies outside x and is only ever used with
// a tap that brings it inside). Rows past M (m >= M) get h0 = INT_MIN: h0 + dh
// (dh >= 0, no overflow) is negative, so the padding check alone zero-fills them.
struct ARow {
  uint64_t addr;
  int h0, w0;
};

template <typename T>
__device__ __forceinline__ ARow a_row(const ConvParams& p, const T* x, int64_t m, int64_t M, int group, int cg) {
  const bool row_ok = m < M;
  const int64_t mm = row_ok ? m : 0;
  const int64_t pq = int64_t(p.P) * p.Q;
  const int64_t n = mm / pq;
  const int op = int((mm - n * pq) / p.Q);
  const int oq = int(mm - n * pq - int64_t(op) * p.Q);
  const int h0 = op * p.stride_h - p.pad_h, w0 = oq * p.stride_w - p.pad_w;
  const int64_t off = ((n * p.H + h0) * p.W + w0) * p.C + int64_t(group) * cg;
  return ARow{reinterpret_cast<uint64_t>(x) + uint64_t(off) * sizeof(T), row_ok ? h0 : INT_MIN, w0};
}

// Element offset of tap (dh, dw), channel c relative to the tap-(0, 0)
// position of a pixel in NHWC x: (dh*W + dw)*C + c, in 64 bits (dh*W*C can
// pass 2^31 for a large image).
__device__ __forceinline__ int64_t tap_offset(const ConvParams& p, const KPos& kp) {
  return (int64_t(kp.dh) * p.W + kp.dw) * p.C + kp.c;
}

// Upper bound of the unsigned row test of the padding check: H while k is a
// real reduction index, else 0, which fails every row (so one select per k
// tile replaces a k < gemm_k test per row).
__device__ __forceinline__ unsigned h_limit(const ConvParams& p, const KPos& kp, int gemm_k) {
  return kp.k < gemm_k ? unsigned(p.H) : 0u;
}

// pre(x) coefficients of the 8 input channels c..c+7 (absolute channel, 8 | c):
// in_scale (1 when absent) and in_shift (0 when absent). Two 16-byte loads
// per vector when it is 16-byte aligned (then c*4 bytes keeps it so), else
// eight 4-byte loads; the values are the same either way.
__device__ __forceinline__ void load_coeffs8(const float* v, int c, float absent, float (&out)[8]) {
  if (v == nullptr) {
#pragma unroll
    for (int j = 0; j < 8; ++j) out[j] = absent;
  } else if ((reinterpret_cast<uintptr_t>(v) & 15) == 0) {
    const float4 lo = __ldg(reinterpret_cast<const float4*>(v + c));
    const float4 hi = __ldg(reinterpret_cast<const float4*>(v + c + 4));
    out[0] = lo.x, out[1] = lo.y, out[2] = lo.z, out[3] = lo.w;
    out[4] = hi.x, out[5] = hi.y, out[6] = hi.z, out[7] = hi.w;
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) out[j] = __ldg(v + c + j);
  }
}

// pre(x) = relu(a*x + b) in place on one 16-byte chunk of 8 elements in
// shared memory (a, b: the chunk's 8 channels' in_scale, in_shift).
template <typename T>
__device__ __forceinline__ void preactivate8(uint4* slot, const float (&a)[8], const float (&b)[8]) {
  uint4 raw = *slot;
  T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = from_float<T>(relu_keep_nan(a[j] * to_float(v[j]) + b[j]));
  *slot = raw;
}

// ---- The loader state both tensor-core kernels keep per thread.
//
// Thread t copies one 16-byte chunk column of the A and B tiles: A rows
// row0 + i*ROW_STEP (output pixels, a_row above) and B rows n0 + row0 +
// i*ROW_STEP (output channels: the byte address of KRSC weight row g*Kg + n;
// rows past Kg read row 0 of the group and are zero-filled). Per k tile the
// thread adds one tap offset to every A row and one byte offset to every B row.
//
// A_LOADS or B_LOADS may be 0: that operand comes by TMA instead (the wgmma
// kernel's WgmmaLoads), and the loader neither keeps nor copies its rows.
template <typename T, int A_LOADS, int B_LOADS, int ROW_STEP>
struct TileLoader {
  // (at least one element each: a zero-length array is not C++)
  uint64_t a_addr[A_LOADS > 0 ? A_LOADS : 1];
  int a_h0[A_LOADS > 0 ? A_LOADS : 1], a_w0[A_LOADS > 0 ? A_LOADS : 1];
  uint64_t b_addr[B_LOADS > 0 ? B_LOADS : 1];
  bool b_row_ok[B_LOADS > 0 ? B_LOADS : 1];

  __device__ __forceinline__ TileLoader(const ConvParams& p, int64_t m0, int n0, int row0, int64_t M, int group,
                                        int cg, int kg, int gemm_k) {
    const T* x = static_cast<const T*>(p.x);
    const T* w = static_cast<const T*>(p.w);
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      const ARow row = a_row(p, x, m0 + row0 + i * ROW_STEP, M, group, cg);
      a_addr[i] = row.addr;
      a_h0[i] = row.h0;
      a_w0[i] = row.w0;
    }
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i) {
      const int n = n0 + row0 + i * ROW_STEP;
      b_row_ok[i] = n < kg;
      b_addr[i] = reinterpret_cast<uint64_t>(w + int64_t(group * kg + (b_row_ok[i] ? n : 0)) * gemm_k);
    }
  }

  // Whether A row i has a real (non-padding) input element at position kp;
  // h_lim = h_limit(p, kp, gemm_k) folds in k < gemm_k.
  __device__ __forceinline__ bool a_ok(const ConvParams& p, int i, const KPos& kp, unsigned h_lim) const {
    return unsigned(a_h0[i] + kp.dh) < h_lim && unsigned(a_w0[i] + kp.dw) < unsigned(p.W);
  }

  // Issue the copies of the k tile at position kp: A row i to sa + i*row_step_bytes,
  // B row i to sb + i*row_step_bytes (shared::cta addresses). Padding taps, rows
  // past M or Kg and k past gemm_k are zero-filled by cp.async (src-size 0; the
  // source is then x or a valid weight row).
  __device__ __forceinline__ void copy(const ConvParams& p, const KPos& kp, int gemm_k, uint32_t sa, uint32_t sb,
                                       uint32_t row_step_bytes) const {
    const unsigned h_lim = h_limit(p, kp, gemm_k);
    const uint64_t tap_bytes = uint64_t(tap_offset(p, kp)) * sizeof(T);
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i) {
      const bool ok = a_ok(p, i, kp, h_lim);
      const uint64_t src = ok ? a_addr[i] + tap_bytes : reinterpret_cast<uint64_t>(p.x);
      ptx::cp_async_16(sa + i * row_step_bytes, reinterpret_cast<const void*>(src), ok);
    }
    const bool k_ok = kp.k < gemm_k;
    // One select per tile keeps every B source inside its row (k past gemm_k
    // reads the row's start, zero-filled).
    const uint32_t kb_bytes = uint32_t(k_ok ? kp.k : 0) * uint32_t(sizeof(T));
#pragma unroll
    for (int i = 0; i < B_LOADS; ++i)
      ptx::cp_async_16(sb + i * row_step_bytes, reinterpret_cast<const void*>(b_addr[i] + kb_bytes),
                       k_ok && b_row_ok[i]);
  }

  // Prologue pre(x) = relu(in_scale*x + in_shift), in place on the A chunks of
  // the tile at position kp that this thread copied itself (its own cp.async
  // wait makes them visible to it; no barrier). chunk_at(i) is A row i's chunk
  // in shared memory; channel0 = group*Cg. Zero-filled chunks stay zero:
  // padding is applied after pre().
  template <typename ChunkAt>
  __device__ __forceinline__ void preactivate(const ConvParams& p, const KPos& kp, int gemm_k, int channel0,
                                              ChunkAt chunk_at) const {
    if (kp.k >= gemm_k) return;
    float a[8], b[8];
    load_coeffs8(p.in_scale, channel0 + kp.c, 1.f, a);
    load_coeffs8(p.in_shift, channel0 + kp.c, 0.f, b);
    const unsigned h_lim = unsigned(p.H);  // k < gemm_k here
#pragma unroll
    for (int i = 0; i < A_LOADS; ++i)
      if (a_ok(p, i, kp, h_lim)) preactivate8<T>(chunk_at(i), a, b);
  }
};


}  // namespace resnet_kernels
