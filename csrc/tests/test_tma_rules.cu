// Host-only checks of the wgmma kernel's TMA rules (csrc/kernels/tma_map.h):
// no GPU needed, so CI runs it.
//
// 1. The im2col copy's geometry. For every A tile and every tap of many
//    convolutions, the kernel's start coordinates (im2col_start) and tap
//    offsets (r*dil_h, s*dil_w), with the map's corners (im2col_box_corners)
//    and traversal strides (the conv's), are walked the way the PTX ISA
//    describes the im2col mode, and every pixel of the walk must be the
//    input position of that row's output pixel at that tap:
//      - the first pixel is the start coordinates plus the offsets;
//      - the box along W is [lower_w + off_w, W + upper_w + off_w), H alike;
//      - each next pixel steps W by the traversal stride; past the box's W
//        end it returns to the box's W start and steps H; past the H end it
//        returns to the H start and goes to the next image.
//    What this checks is the kernel's arithmetic against that reading of the
//    documentation; whether the hardware agrees is ctest's question.
// 2. Which calls may load A by TMA (tma_gemm_input_ok, tma_im2col_input_ok).
// 3. RESNET_KERNELS_CUDA_TMA parsing (tma_from_env).
// 4. The persistent kernel (wgmma_ws_conv.cuh): which calls it takes
//    (tma_epilogue_ok, wgmma_persistent), RESNET_KERNELS_CUDA_PERSISTENT
//    parsing, and its epilogue tile: every accumulator pair of the two
//    consumer warpgroups lands in a distinct 4-byte cell (ws_pair_offset)
//    at the place the TMA copies' 128-byte swizzle puts that (row, column),
//    and each warp's 32 accesses hit 32 distinct banks.
// Exit status 0 when every check passes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "kernels/launch.h"
#include "kernels/tma_map.h"
#include "kernels/wgmma_ws_config.h"

using resnet_kernels::ConvParams;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL  %s\n", what);
    ++failures;
  }
}

int out_size(int in, int k, int stride, int pad, int dil) { return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1; }

ConvParams conv(int n, int c, int h, int w, int k, int r, int s, int stride_h, int stride_w, int pad_h, int pad_w,
                int dil_h, int dil_w, int groups = 1) {
  ConvParams p{};
  p.N = n, p.C = c, p.H = h, p.W = w, p.K = k, p.R = r, p.S = s;
  p.stride_h = stride_h, p.stride_w = stride_w, p.pad_h = pad_h, p.pad_w = pad_w, p.dil_h = dil_h, p.dil_w = dil_w;
  p.groups = groups;
  p.P = out_size(h, r, stride_h, pad_h, dil_h);
  p.Q = out_size(w, s, stride_w, pad_w, dil_w);
  return p;
}

// Walks every 128-row tile and tap of p as the im2col copy would; false at the first mismatch.
bool traversal_matches(const ConvParams& p, int rows = 128) {
  int lower[2], upper[2];
  resnet_kernels::im2col_box_corners(p, lower, upper);
  const int64_t pq = int64_t(p.P) * p.Q, M = p.N * pq;
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const resnet_kernels::Im2colStart start = resnet_kernels::im2col_start(p, m0);
    for (int r = 0; r < p.R; ++r)
      for (int s = 0; s < p.S; ++s) {
        const int off_w = s * p.dil_w, off_h = r * p.dil_h;
        const int lo_w = lower[0] + off_w, hi_w = p.W + upper[0] + off_w;
        const int lo_h = lower[1] + off_h, hi_h = p.H + upper[1] + off_h;
        int n = start.n, h = start.h + off_h, w = start.w + off_w;
        for (int i = 0; i < rows; ++i) {
          const int64_t m = m0 + i;
          if (m < M) {
            const int64_t en = m / pq;
            const int rem = int(m - en * pq), op = rem / p.Q, oq = rem - op * p.Q;
            const int eh = op * p.stride_h - p.pad_h + r * p.dil_h, ew = oq * p.stride_w - p.pad_w + s * p.dil_w;
            if (n != en || h != eh || w != ew) {
              std::printf("      N=%d H=%d W=%d R=%d S=%d stride %dx%d pad %dx%d dil %dx%d: row %lld tap (%d,%d) "
                          "walks to (%d,%d,%d), the conv reads (%lld,%d,%d)\n",
                          p.N, p.H, p.W, p.R, p.S, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
                          (long long)m, r, s, n, h, w, (long long)en, eh, ew);
              return false;
            }
          }
          w += p.stride_w;
          if (w >= hi_w) {
            w = lo_w;
            h += p.stride_h;
            if (h >= hi_h) {
              h = lo_h;
              ++n;
            }
          }
        }
      }
  }
  return true;
}

void check_traversal() {
  int cases = 0, bad = 0;
  auto run = [&](const ConvParams& p) {
    if (p.P < 1 || p.Q < 1) return;
    ++cases;
    if (!traversal_matches(p)) ++bad;
  };
  // ResNet-50's gathered layers: the 3x3s at each map size (one strided) and a strided 1x1.
  run(conv(2, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1));
  run(conv(2, 128, 56, 56, 128, 3, 3, 2, 2, 1, 1, 1, 1));
  run(conv(3, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1));
  run(conv(5, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1));
  run(conv(2, 1024, 14, 14, 2048, 1, 1, 2, 2, 0, 0, 1, 1));
  // Random geometries: filters 1-5, strides 1-3, padding 0-3, dilation 1-3, small odd maps
  // (tiles cross rows and images).
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int i = 0; i < 300; ++i)
    run(conv(pick(1, 3), 64, pick(1, 20), pick(1, 20), 64, pick(1, 5), pick(1, 5), pick(1, 3), pick(1, 3),
             pick(0, 3), pick(0, 3), pick(1, 3), pick(1, 3)));
  std::printf("%-5s im2col traversal: %d convolutions, %d mismatched\n", bad ? "FAIL" : "ok", cases, bad);
  failures += bad;
}

void check_eligibility() {
  using resnet_kernels::tma_gemm_input_ok;
  using resnet_kernels::tma_im2col_input_ok;
  const int before = failures;
  const ConvParams gemm = conv(2, 256, 14, 14, 512, 1, 1, 1, 1, 0, 0, 1, 1);
  check(tma_gemm_input_ok(gemm), "1x1 stride 1 is a plain GEMM");
  ConvParams pre = gemm;
  const float coeff = 1.f;
  pre.in_scale = &coeff;
  check(!tma_gemm_input_ok(pre) && !tma_im2col_input_ok(pre), "a prologue keeps A gathered");
  check(!tma_gemm_input_ok(conv(2, 256, 14, 14, 512, 1, 1, 2, 2, 0, 0, 1, 1)), "a strided 1x1 is no plain GEMM");
  check(tma_im2col_input_ok(conv(2, 256, 14, 14, 512, 1, 1, 2, 2, 0, 0, 1, 1)), "a strided 1x1 takes im2col");
  check(tma_im2col_input_ok(conv(2, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1)), "a 3x3 with C = 64 takes im2col");
  check(!tma_im2col_input_ok(conv(2, 72, 9, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1)), "64 must divide C/groups");
  check(!tma_im2col_input_ok(conv(2, 128, 9, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4)), "... per group (4 x 32)");
  check(tma_im2col_input_ok(conv(2, 128, 9, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1, 2)), "2 groups of 64 take im2col");
  check(!tma_im2col_input_ok(conv(1, 64, 40, 40, 64, 3, 3, 9, 9, 1, 1, 1, 1)), "traversal strides stop at 8");
  check(!tma_im2col_input_ok(conv(1, 64, 300, 300, 64, 3, 3, 1, 1, 130, 130, 1, 1)), "corners are signed 8-bit");
  check(!tma_im2col_input_ok(conv(1, 64, 300, 300, 64, 3, 3, 1, 1, 1, 1, 70, 70)),
        "an upper corner of 1 - 2*70 is out of range");
  std::printf("%-5s TMA eligibility rules\n", failures > before ? "FAIL" : "ok");
}

void check_env() {
  using resnet_kernels::TmaChoice;
  const int before = failures;
  const struct {
    const char* value;
    TmaChoice choice;
  } good[] = {{nullptr, TmaChoice::kAll}, {"", TmaChoice::kAll}, {"1", TmaChoice::kAll},
              {"weights", TmaChoice::kWeights}, {"0", TmaChoice::kNone}};
  for (const auto& g : good) {
    if (g.value == nullptr)
      unsetenv("RESNET_KERNELS_CUDA_TMA");
    else
      setenv("RESNET_KERNELS_CUDA_TMA", g.value, 1);
    TmaChoice choice = TmaChoice::kNone;
    check(resnet_kernels::tma_from_env(&choice) == nullptr && choice == g.choice, "a valid RESNET_KERNELS_CUDA_TMA");
  }
  setenv("RESNET_KERNELS_CUDA_TMA", "yes", 1);
  TmaChoice choice = TmaChoice::kAll;
  const char* why = resnet_kernels::tma_from_env(&choice);
  check(why != nullptr && std::strstr(why, "RESNET_KERNELS_CUDA_TMA='yes' is not a TMA choice") != nullptr,
        "a bad value names the variable");
  unsetenv("RESNET_KERNELS_CUDA_TMA");
  std::printf("%-5s RESNET_KERNELS_CUDA_TMA parsing\n", failures > before ? "FAIL" : "ok");
}

// A call with y, scale, shift and a residual of y's shape, all dense NHWC and
// 16-byte aligned (fake addresses: nothing is dereferenced).
ConvParams with_epilogue(ConvParams p) {
  p.y = reinterpret_cast<void*>(uintptr_t(0x10000));
  p.scale = reinterpret_cast<const float*>(uintptr_t(0x20000));
  p.shift = reinterpret_cast<const float*>(uintptr_t(0x30000));
  p.residual = reinterpret_cast<const void*>(uintptr_t(0x40000));
  p.res_channels = p.K;
  p.res_stride_c = 1, p.res_stride_w = p.K, p.res_stride_h = int64_t(p.K) * p.Q;
  p.res_stride_n = int64_t(p.K) * p.Q * p.P;
  return p;
}

void check_persistent_rules() {
  using resnet_kernels::tma_epilogue_ok;
  using resnet_kernels::wgmma_persistent;
  using resnet_kernels::WgmmaLoads;
  const int before = failures;
  const ConvParams gemm = with_epilogue(conv(2, 256, 14, 14, 512, 1, 1, 1, 1, 0, 0, 1, 1));
  check(tma_epilogue_ok(gemm), "dense NHWC residual, aligned vectors: TMA epilogue");
  ConvParams p = gemm;
  p.residual = nullptr;
  check(tma_epilogue_ok(p), "no residual: TMA epilogue");
  p = gemm, p.scale = nullptr, p.shift = nullptr;
  check(tma_epilogue_ok(p), "no scale or shift: TMA epilogue");
  p = gemm, p.res_channels = p.K / 2, p.res_stride_w *= 2;
  check(!tma_epilogue_ok(p), "an option-A residual is no TMA tile");
  p = gemm, p.res_stride_c = int64_t(p.P) * p.Q, p.res_stride_w = 1, p.res_stride_h = p.Q;
  check(!tma_epilogue_ok(p), "an NCHW residual is no TMA tile");
  p = gemm, p.res_stride_w = p.K + 8, p.res_stride_h = int64_t(p.K + 8) * p.Q, p.res_stride_n *= 2;
  check(!tma_epilogue_ok(p), "a channel slice of a wider residual is no TMA tile");
  p = gemm, p.scale += 1;
  check(!tma_epilogue_ok(p), "a misaligned scale");
  p = gemm, p.residual = static_cast<const char*>(p.residual) + 8;
  check(!tma_epilogue_ok(p), "a misaligned residual");
  p = gemm, p.y = static_cast<char*>(p.y) + 4;
  check(!tma_epilogue_ok(p), "a misaligned output");
  p = with_epilogue(conv(2, 64, 10, 10, 36, 3, 3, 1, 1, 1, 1, 1, 1));
  check(!tma_epilogue_ok(p), "8 must divide K/groups (16-byte rows)");
  p = with_epilogue(conv(2, 128, 10, 10, 96, 3, 3, 1, 1, 1, 1, 1, 1, 2));
  check(tma_epilogue_ok(p), "2 groups of 48 output channels");
  p = with_epilogue(conv(65536, 64, 256, 128, 64, 1, 1, 1, 1, 0, 0, 1, 1));  // M = 2^31
  check(!tma_epilogue_ok(p), "M beyond 32-bit TMA row coordinates");
  check(wgmma_persistent(gemm, WgmmaLoads::kTmaAB, true) && wgmma_persistent(gemm, WgmmaLoads::kTmaIm2col, true),
        "TMA operands and epilogue: persistent");
  check(!wgmma_persistent(gemm, WgmmaLoads::kTmaAB, false), "switched off");
  check(!wgmma_persistent(gemm, WgmmaLoads::kTmaB, true) && !wgmma_persistent(gemm, WgmmaLoads::kCpAsync, true),
        "gathered A keeps the one-tile kernel");
  std::printf("%-5s persistent kernel eligibility rules\n", failures > before ? "FAIL" : "ok");

  const int before_env = failures;
  const struct {
    const char* value;
    bool on;
  } good[] = {{nullptr, true}, {"", true}, {"1", true}, {"0", false}};
  for (const auto& g : good) {
    if (g.value == nullptr)
      unsetenv("RESNET_KERNELS_CUDA_PERSISTENT");
    else
      setenv("RESNET_KERNELS_CUDA_PERSISTENT", g.value, 1);
    bool on = !g.on;
    check(resnet_kernels::persistent_from_env(&on) == nullptr && on == g.on, "a valid RESNET_KERNELS_CUDA_PERSISTENT");
  }
  setenv("RESNET_KERNELS_CUDA_PERSISTENT", "yes", 1);
  bool on = false;
  const char* why = resnet_kernels::persistent_from_env(&on);
  check(why != nullptr && std::strstr(why, "RESNET_KERNELS_CUDA_PERSISTENT='yes' is not a choice") != nullptr,
        "a bad value names the variable");
  unsetenv("RESNET_KERNELS_CUDA_PERSISTENT");
  std::printf("%-5s RESNET_KERNELS_CUDA_PERSISTENT parsing\n", failures > before_env ? "FAIL" : "ok");
}

// Every (consumer, warp, lane, j, half) of a BN-wide epilogue tile: its cell is
// where the 128-byte swizzle puts (row, col) -- the layout the residual's TMA
// load writes and the output's TMA store reads -- no two pairs share a cell,
// and one warp's 32 lanes at one (j, half) use every bank once.
template <int BN>
void check_epilogue_cells() {
  const int before = failures;
  constexpr int kCells = 128 * BN / 2;  // 4-byte cells of a BM x BN tile of 2-byte elements
  static bool seen[kCells];
  for (bool& b : seen) b = false;
  for (int c = 0; c < 2; ++c)
    for (int warp = 0; warp < 4; ++warp)
      for (int j = 0; j < BN / 8; ++j)
        for (int half = 0; half < 2; ++half) {
          unsigned banks = 0;
          for (int lane = 0; lane < 32; ++lane) {
            const uint32_t off = resnet_kernels::ws_pair_offset(c, warp, lane, j, half);
            const int row = 64 * c + 16 * warp + lane / 4 + 8 * half, col = 8 * j + 2 * (lane % 4);
            const uint32_t swizzled =
                uint32_t(col / 64) * 16384 + uint32_t(row) * 128 + uint32_t(((col % 64) / 8) ^ (row % 8)) * 16 + (col % 8) * 2;
            if (off != swizzled || off % 4 != 0 || off / 4 >= uint32_t(kCells) || seen[off / 4]) {
              check(false, "an epilogue pair off its swizzled cell, or two pairs in one cell");
              return;
            }
            seen[off / 4] = true;
            banks |= 1u << ((off / 4) % 32);
          }
          if (banks != 0xffffffffu) {
            check(false, "a bank conflict in the epilogue tile");
            return;
          }
        }
  for (bool b : seen) check(b, "an epilogue cell no pair writes");
  std::printf("%-5s epilogue tile cells, 128x%d\n", failures > before ? "FAIL" : "ok", BN);
}

}  // namespace

int main() {
  check_traversal();
  check_eligibility();
  check_env();
  check_persistent_rules();
  check_epilogue_cells<64>();
  check_epilogue_cells<128>();
  check_epilogue_cells<256>();
  std::printf(failures ? "FAILED\n" : "all checks passed\n");
  return failures ? 1 : 0;
}
