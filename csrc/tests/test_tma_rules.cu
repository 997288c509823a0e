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
// Exit status 0 when every check passes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "kernels/launch.h"
#include "kernels/tma_map.h"

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

}  // namespace

int main() {
  check_traversal();
  check_eligibility();
  check_env();
  std::printf(failures ? "FAILED\n" : "all checks passed\n");
  return failures ? 1 : 0;
}
