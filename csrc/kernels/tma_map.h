// Tensor maps (CUtensorMap) for the wgmma kernel's TMA loads (wgmma_conv.cuh,
// WgmmaLoads in launch.h). Host code.
//
// A tensor map describes a global tensor to the tensor memory accelerator:
// element type, sizes and byte strides of up to 5 dimensions (innermost
// first), the box one copy moves, and the shared-memory swizzle it writes.
// Both maps here are rank 3 with the group as a dimension of its own, so a
// box never reaches into the next group's channels: what lies past the
// group's end (channels past C/groups, output channels past K/groups) is
// outside the tensor and arrives as zeros, as the cp.async path zero-fills it.
// The box's inner extent is 64 elements = 128 bytes, one line of the 128-byte
// swizzle the kernel's shared tiles and wgmma descriptors use (ptx_sm90.cuh).
//
// The driver function that builds a map (cuTensorMapEncodeTiled) is looked up
// once through the runtime (cudaGetDriverEntryPointByVersion), so the
// extension does not link libcuda itself.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "kernels/conv_params.h"

namespace resnet_kernels {

// Whether the driver's cuTensorMapEncodeTiled and cuTensorMapEncodeIm2col
// were found (looked up once).
bool tma_encoder_available();

// B of the implicit GEMM: the KRSC weights as (gemm_k, K/groups, groups) --
// element (k, n, g) is weight row g*Kg + n, reduction index k -- with a box of
// 64 x box_rows x 1. A copy at (k0, n0, g) fills the [box_rows][64] B tile of
// k tile k0 / 64 and output channels n0 .. n0 + box_rows - 1 of group g.
// `bf16`: the element type (else fp16). cudaErrorInvalidValue when the driver
// rejects the map (or the encoder is missing).
cudaError_t encode_weight_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map);

// A of a plain-GEMM call (tma_gemm_input_ok): NHWC x as (C/groups, groups,
// N*H*W) -- element (c, g, m) is x[m][g*Cg + c] -- with a box of 64 x 1 x
// box_rows: a copy at (k0, g, m0) fills the [box_rows][64] A tile of pixels
// m0 .. m0 + box_rows - 1, channels k0 .. k0 + 63 of group g.
cudaError_t encode_gemm_input_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map);

// A of a gathered call by the tensor unit's im2col mode (tma_im2col_input_ok):
// NHWC x as (C, W, H, N) with traversal strides (stride_w, stride_h) and the
// bounding box of the filter's top-left tap. One copy at coordinates (c, w0,
// h0, n) with tap offsets (s*dil_w, r*dil_h) fills a [box_rows][64] A tile:
// channels c .. c+63 of box_rows consecutive output pixels, starting at the
// one whose top-left tap is input (n, h0, w0) = (n, op*stride_h - pad_h,
// oq*stride_w - pad_w), walking output columns, then rows, then images, and
// zero-filling taps in the padding (and pixels past the last image).
cudaError_t encode_im2col_input_map(const ConvParams& p, bool bf16, int box_rows, CUtensorMap* map);

// An activation of the output's shape (y, or a residual of y's shape, dense
// NHWC: tma_epilogue_ok) at `base`, as (K/groups, groups, N*P*Q) -- element
// (n, g, m) is base[m][g*Kg + n] -- with a box of 64 x 1 x box_rows: a copy
// (load or store) at (n0, g, m0) moves the [box_rows][64] block of pixels
// m0 .. m0 + box_rows - 1, channels n0 .. n0 + 63 of group g, in the 128-byte
// swizzle; what lies outside the tensor is zero-filled (load) or not written
// (store).
cudaError_t encode_output_map(const ConvParams& p, bool bf16, const void* base, int box_rows, CUtensorMap* map);

// The im2col map's bounding-box corners, W first (the driver's order, innermost
// dimension first): lower = (-pad_w, -pad_h), upper = (pad_w - (S-1)*dil_w,
// pad_h - (R-1)*dil_h) -- offsets from position 0 and from W (H) of the box
// the filter's top-left tap sweeps. Walked with the stride, the box's W
// extent W + 2*pad_w - (S-1)*dil_w holds Q positions, its H extent P.
void im2col_box_corners(const ConvParams& p, int (&lower)[2], int (&upper)[2]);

// Start coordinates of the im2col copy for the A tile whose first row is
// output pixel m0 = (n, op, oq): the input position of that pixel's top-left
// tap, (n, op*stride_h - pad_h, oq*stride_w - pad_w). The copy adds the tap
// offsets itself. (Host and device: the kernel's thread 0 and the host-side
// test of the traversal, csrc/tests/test_tma_rules.cu.)
struct Im2colStart {
  int n, h, w;
};
__host__ __device__ inline Im2colStart im2col_start(const ConvParams& p, int64_t m0) {
  const int64_t pq = int64_t(p.P) * p.Q;
  const int64_t n = m0 / pq;
  const int rem = int(m0 - n * pq), op = rem / p.Q;
  return Im2colStart{int(n), op * p.stride_h - p.pad_h, (rem - op * p.Q) * p.stride_w - p.pad_w};
}

}  // namespace resnet_kernels
