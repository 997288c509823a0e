"""The fused conv + BN + residual + ReLU kernel: an NHWC implicit GEMM.

GEMM view of one group of the convolution (after weights.py's repacking):

    out[m, n] = sum_kk A[m, kk] * B[kk, n]
    m  = (img, p, q)  output pixel,   M = N*P*Q           (rows, BLOCK_M)
    n  = output channel in the group, K = channels/group  (columns, BLOCK_N)
    kk = (r, s, c)    reduction,      R*S*C               (BLOCK_K at a time)
    A[m, (r, s, c)] = pre(x)[img, c, p*stride_h - pad_h + r*dil_h, q*stride_w - pad_w + s*dil_w]
                      (0 outside the image: padding applies after pre())
    B[(r, s, c), n] = weight packed as (G, R, S, C, K), row kk = (r*S + s)*C + c

x, the residual and the output are addressed through their strides, so any
memory format is correct; channels_last (channel stride 1, which Triton
specialises as a constant) gives contiguous, vectorised tile loads.

Four ways to walk the reduction, chosen by constexpr flags:
- IS_GEMM (1x1, stride 1, no padding, rows of x dense): A is a plain (M, C)
  matrix with row stride `sxw`; no image-coordinate arithmetic at all. With
  TMA (Hopper, autotune candidates of their own; see tma.py) the A and B tiles
  are copied by tensor descriptors instead of pointer loads.
- tap-aligned (C a multiple of BLOCK_K): each BLOCK_K slice lies inside one
  tap (r, s), so the tap and its padding mask are per-iteration scalars/rows.
- ROW_RUN (narrow C, one group, channels_last, no horizontal dilation; e.g.
  the 7x7 stem with C=3): for each tap row r the S*C values a pixel needs are
  one contiguous run of x, so the reduction is (r, j < S*C) padded to
  RUN = next power of two per row (weights packed to match): 7 x 32 = 224
  steps for the stem instead of 147, and per element a shift, a mask and two
  range compares instead of decoding a tap.
- FLAT_K (C not a multiple of BLOCK_K otherwise: other layouts, groups,
  dilation): the slice runs over (r, s, c) flattened and every column takes
  its tap from a decode table (taps.py).

Three schedules: one output tile per program; PERSISTENT (TMA walk only), a
grid of about one program per SM, each walking output tiles in one flattened,
software-pipelined loop so that a tile's epilogue overlaps the next tile's
copies; STREAM_K (pointer walks, grids of a few ragged waves), about one
program per SM, the programs sharing out all tiles' reduction iterations evenly,
so a tile may be worked on by two or more programs whose fp32 partials the last
one adds before its epilogue (see the kernel body). All run the same two pieces:
_tile_accumulator (the walks above, over a range of a tile's iterations) and
_tile_output (the epilogue, or split-K partials).

Split-K (SPLIT_K > 1, for grids too small to fill the GPU: late layers at small
batch): grid axis 2 splits the reduction iterations into SPLIT_K contiguous
ranges; each program writes its fp32 partial tile to a workspace
(SPLIT_K, M, all output channels) instead of running the epilogue, and
splitk_epilogue_kernel sums the partials in a fixed order (deterministic, no
atomics) and runs the same epilogue (_epilogue_store).

64-bit safety: the pixel index m and everything multiplied by a tensor stride
is int64 (see _output_pixels / _pixel_rows); channel and tap indices stay
int32 (< 2^31 by far) until they meet a stride.
"""

import triton
import triton.language as tl

from . import tma
from .tuning import autotune_configs, epilogue_halves, flat_k, persistent, prune_configs, stream_k, tma_loads, TUNING_KEY


@triton.jit
def _output_pixels(pid_m, M, P, Q, BLOCK_M: tl.constexpr):
    """The BLOCK_M output pixels of tile pid_m as int64 (img, p, q) plus a bounds mask.

    m = (img*P + p)*Q + q.  m reaches N*P*Q, and m times a stride passes 2^31
    in any tensor of over 2^31 elements (4 GiB of fp16: the stem's output from
    batch 2,675 on; tests/test_large_tensors.py), so it is int64 from the
    program id on.
    """
    offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    q = offs_m % Q
    pq = offs_m // Q
    p = pq % P
    img = pq // P
    return offs_m, img, p, q, offs_m < M


@triton.jit
def _pixel_rows(img, h, w, s_img, s_h, s_w):
    """Element offsets (int64) of pixels (img, h, w) in a tensor with these strides."""
    return img.to(tl.int64) * s_img + h.to(tl.int64) * s_h + w.to(tl.int64) * s_w


@triton.jit
def _prologue(a, ch, ch_mask, valid, in_scale_ptr, in_shift_ptr, HAS_IN_SCALE: tl.constexpr,
              HAS_IN_SHIFT: tl.constexpr):
    """pre(x) = relu(in_scale[c]*x + in_shift[c]) on a loaded A tile, then padded taps back to 0.

    `ch` is the (global) input channel of each column of a (1-D, BLOCK_K), so the
    per-channel vectors are loaded once per column, not per element. The masked
    loads of a already gave 0 for padding, but relu(in_shift) need not be 0, so
    `valid` (a's load mask) re-zeroes those taps.
    """
    y = a.to(tl.float32)
    if HAS_IN_SCALE:
        y = y * tl.load(in_scale_ptr + ch, mask=ch_mask, other=0.0)[None, :]
    if HAS_IN_SHIFT:
        y = y + tl.load(in_shift_ptr + ch, mask=ch_mask, other=0.0)[None, :]
    # NaN stays NaN, as in torch.relu (the default max returns the non-NaN operand, 0).
    y = tl.where(valid, tl.maximum(y, 0.0, propagate_nan=tl.PropagateNan.ALL), 0.0)
    return y.to(a.dtype)


@triton.jit
def _epilogue_store(acc, offs_m, mask_m, k0, n_valid, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                    son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                    OUT_DENSE: tl.constexpr, RES_DENSE: tl.constexpr, HALVES: tl.constexpr):
    """The fused epilogue of a (BLOCK_M, BLOCK_N) accumulator tile, whole or in two column halves.

    Column j of acc is global output channel k0 + j, valid for j < n_valid.

    HALVES (tuning.epilogue_halves): in the wgmma accumulator layout each thread
    holds BLOCK_N / 4 columns, so the per-channel scale and shift take BLOCK_N / 2
    registers next to the accumulator's own; on a 128x256 tile of 8 warps that is
    128 + 128 and the epilogue spills. Two halves of BLOCK_N / 2 columns each
    (a register split of the same layout, no data movement) halve that.
    """
    if HALVES:
        acc_lo, acc_hi = _column_halves(acc)
        half: tl.constexpr = acc.shape[1] // 2
        _epilogue_tile(acc_lo, offs_m, mask_m, k0, n_valid, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                       son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                       HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE)
        _epilogue_tile(acc_hi, offs_m, mask_m, k0 + half, n_valid - half, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                       son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                       HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE)
    else:
        _epilogue_tile(acc, offs_m, mask_m, k0, n_valid, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                       son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                       HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE)


@triton.jit
def _column_halves(t):
    """t[:, :n/2], t[:, n/2:] of a (rows, n) tile: (rows, 2, n/2) -> (rows, n/2, 2) -> split.

    The channel vectors of each half are made with tl.arange in _epilogue_tile,
    not split the same way: a split 1-D vector gets a layout replicated across
    the threads (every thread holding all its values).
    """
    return tl.split(tl.permute(tl.reshape(t, (t.shape[0], 2, t.shape[1] // 2)), (0, 2, 1)))


@triton.jit
def _epilogue_tile(acc, offs_m, mask_m, k0, n_valid, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                    son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                    OUT_DENSE: tl.constexpr, RES_DENSE: tl.constexpr):
    """The fused epilogue in fp32 and the one store: relu?(scale[k]*acc + shift[k] + residual).

    acc is (rows, columns) for output pixels offs_m (int64) and global output
    channels k_out = k0 + column (int64), valid for column < n_valid. Option A reads residual[img, k, p*res_step, q*res_step]
    for k < res_channels and adds 0 above.

    OUT_DENSE / RES_DENSE (rows of the tensor are dense, as in channels_last with
    the same spatial size: pixel m starts at m * soq, resp. m * srw): the row
    offset is one multiply. Otherwise the pixel is decoded into (img, p, q),
    two int64 divisions per row the thread holds: with the store layout of a
    128x256 tile that is 32 divisions per thread, about as many instructions as
    seven iterations of the main loop.
    """
    cols = tl.arange(0, acc.shape[1])
    k_out = k0 + cols
    mask_n = cols < n_valid
    if HAS_SCALE:
        acc = acc * tl.load(scale_ptr + k_out, mask=mask_n, other=0.0)[None, :]
    if HAS_SHIFT:
        acc = acc + tl.load(shift_ptr + k_out, mask=mask_n, other=0.0)[None, :]
    out_mask = mask_m[:, None] & mask_n[None, :]
    if not (OUT_DENSE and (RES_DENSE or not HAS_RES)):
        q = offs_m % Q
        pq = offs_m // Q
        p = pq % P
        img = pq // P
    if HAS_RES:
        if RES_DENSE:
            res_rows = offs_m * srw
        else:
            res_rows = _pixel_rows(img, p * res_step, q * res_step, srn, srh, srw)
        res_mask = out_mask & (k_out < res_channels)[None, :]
        res = tl.load(res_ptr + res_rows[:, None] + (k_out * src)[None, :], mask=res_mask, other=0.0)
        acc = acc + res.to(tl.float32)
    if RELU:
        acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN, as in torch.relu
    if OUT_DENSE:
        out_rows = offs_m * soq
    else:
        out_rows = _pixel_rows(img, p, q, son, sop, soq)
    tl.store(out_ptr + out_rows[:, None] + (k_out * sok)[None, :], acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _split_range(iters, SPLIT_K):
    """Iterations [lo, hi) of the reduction that program tl.program_id(2) owns.

    ceil(iters / SPLIT_K) per split, so the last splits may get fewer iterations
    or none (hi < lo is an empty range): such a program stores zero partials,
    which the sum ignores. The host cannot know BLOCK_K (autotuned), hence
    this tolerance rather than SPLIT_K <= iters.
    """
    per_split = tl.cdiv(iters, SPLIT_K)
    lo = tl.program_id(2) * per_split
    return lo, tl.minimum(lo + per_split, iters)


@triton.jit
def _reduction_iters(C, R: tl.constexpr, S: tl.constexpr, RUN: tl.constexpr, BLOCK_K: tl.constexpr,
                     TMA: tl.constexpr, ROW_RUN: tl.constexpr, FLAT_K: tl.constexpr):
    """Iterations of BLOCK_K the walk the flags select takes over one output tile's whole reduction
    (tuning.reduction_iters is the host's copy): C / BLOCK_K channel slices (TMA), the tap rows'
    runs (ROW_RUN), the flattened (r, s, c) (FLAT_K), or R*S taps of C / BLOCK_K slices."""
    if TMA:
        return C // BLOCK_K
    elif ROW_RUN:
        return tl.cdiv(R * RUN, BLOCK_K)
    elif FLAT_K:
        return tl.cdiv(R * S * C, BLOCK_K)
    else:
        return R * S * tl.cdiv(C, BLOCK_K)


@triton.jit
def _tma_gemm_walk(acc, a_desc, b_desc, m0, n0, ch0, it_lo, it_hi, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr,
                   DOT_PRECISION: tl.constexpr):
    """acc += A[m0:, this group's channels] @ B[those channels, n0:] with the tiles copied by TMA.

    A is x as an (M, all channels) matrix, B the packed weights as a (G*C, K) one
    (tma.py); the group's channels are columns of A and rows of B from ch0 =
    group*C on, BLOCK_K at a time (BLOCK_K divides C here), iterations [it_lo, it_hi) of the
    C / BLOCK_K. A box reaching past row M or column K comes back zero-filled. All coordinates
    are int32.
    """
    for it in range(it_lo, it_hi):
        acc = _tma_k_step(acc, a_desc, b_desc, m0, n0, ch0 + it * BLOCK_K, UPCAST, DOT_PRECISION)
    return acc


@triton.jit
def _tma_k_step(acc, a_desc, b_desc, m0, n0, c, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """acc += A[m0:, c:] @ B[c:, n0:] for one BLOCK_K slice of channels, both boxes copied by TMA."""
    a = a_desc.load([m0, c])
    b = b_desc.load([c, n0])
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=DOT_PRECISION)


@triton.jit
def _tile_accumulator(pid_m, pid_n, group, x_ptr, w_ptr, in_scale_ptr, in_shift_ptr, tap_ptr, a_desc, b_desc,
                      M, H, W, P, Q, C, K, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, sxn, sxc, sxh, sxw,
                      it_lo, it_hi, R: tl.constexpr, S: tl.constexpr, IS_GEMM: tl.constexpr,
                      HAS_IN_SCALE: tl.constexpr, HAS_IN_SHIFT: tl.constexpr, UPCAST: tl.constexpr,
                      DOT_PRECISION: tl.constexpr, ROW_RUN: tl.constexpr, RUN: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, FLAT_K: tl.constexpr,
                      TMA: tl.constexpr):
    """The fp32 accumulator of output tile (pid_m, pid_n) of `group` (int64) over iterations
    [it_lo, it_hi) of the tile's reduction (of _reduction_iters: all of them, a split's range or
    a stream-K segment), walked the way the flags say (module docstring). The other arguments
    are the kernel's."""
    offs_m, img, p, q, mask_m = _output_pixels(pid_m, M, P, Q, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < K
    has_pre = HAS_IN_SCALE or HAS_IN_SHIFT

    # This group's slice: input channels [group*C, group*C + C), weights
    # [group] of the packed (G, R*S*C, K) matrix (< 2^31 elements per group;
    # ROW_RUN: one group, (1, R*RUN, K)).
    x_base = x_ptr + group * C * sxc
    w_base = w_ptr + group * (R * S * C * K)
    ch_base = group * C
    # Top-left input tap of each output pixel. int32 (|value| < 2^31 for any image
    # that fits in memory) so the padding checks are 32-bit compares; products
    # with strides are taken in int64.
    ih0 = (p * stride_h - pad_h).to(tl.int32)
    iw0 = (q * stride_w - pad_w).to(tl.int32)
    # Each pixel's top-left tap in x (int64); a tap adds a per-column or per-iteration offset.
    pix = img * sxn + ih0.to(tl.int64) * sxh + iw0.to(tl.int64) * sxw

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if TMA:
        acc = _tma_gemm_walk(acc, a_desc, b_desc, pid_m * BLOCK_M, pid_n * BLOCK_N, (group * C).to(tl.int32),
                             it_lo, it_hi, BLOCK_K, UPCAST, DOT_PRECISION)
    elif ROW_RUN:
        # Reduction index kk = r * RUN + j, j = s*C + c < S*C (weights packed with
        # zero rows for S*C <= j < RUN, weights.py). For tap row r, the S*C values
        # of a pixel are one contiguous run of x (channels_last, one group, no
        # horizontal dilation): x[pix + r*dil_h*sxh + j]. RUN is a power of two, so
        # (r, j) is a shift and a mask; the horizontal padding is a range of j per
        # pixel: tap s is inside the image iff 0 <= iw0 + s < W, i.e.
        # max(-iw0, 0)*C <= j < min(W - iw0, S)*C.
        j_lo = tl.maximum(-iw0, 0) * C
        j_hi = tl.minimum(W - iw0, S) * C
        for it in range(it_lo, it_hi):
            kk = it * BLOCK_K + tl.arange(0, BLOCK_K)
            r = kk // RUN
            j = kk % RUN
            mask_k = r < R
            ih = ih0[:, None] + (r * dil_h)[None, :]
            valid = (mask_m[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H)
                     & (j[None, :] >= j_lo[:, None]) & (j[None, :] < j_hi[:, None]))
            a = tl.load(x_base + pix[:, None] + ((r * dil_h).to(tl.int64) * sxh + j)[None, :], mask=valid, other=0.0)
            b = tl.load(w_base + kk[:, None] * K + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    elif FLAT_K:
        RSC = R * S * C
        for it in range(it_lo, it_hi):
            kk = it * BLOCK_K + tl.arange(0, BLOCK_K)
            mask_k = kk < RSC
            # Column kk's tap offset and channel from the decode table (taps.py), not divisions.
            dh = tl.load(tap_ptr + kk, mask=mask_k, other=0)
            dw = tl.load(tap_ptr + RSC + kk, mask=mask_k, other=0)
            c = tl.load(tap_ptr + 2 * RSC + kk, mask=mask_k, other=0)
            ih = ih0[:, None] + dh[None, :]
            iw = iw0[:, None] + dw[None, :]
            valid = mask_m[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            col = dh.to(tl.int64) * sxh + dw.to(tl.int64) * sxw + c.to(tl.int64) * sxc
            a = tl.load(x_base + pix[:, None] + col[None, :], mask=valid, other=0.0)
            if has_pre:
                a = _prologue(a, ch_base + c, mask_k, valid, in_scale_ptr, in_shift_ptr, HAS_IN_SCALE, HAS_IN_SHIFT)
            b = tl.load(w_base + kk[:, None] * K + offs_n[None, :], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    else:
        # One flat loop over (tap, channel slice) pipelines better than two nested loops.
        # The position (r, s, c0) is stepped from iteration to iteration, not
        # decoded from `it`: three integer divisions per iteration were a fifth
        # of the loop's instructions on sm_90 (see benchmarks/NOTES.md).
        c_steps = tl.cdiv(C, BLOCK_K)
        tap = it_lo // c_steps  # where the range starts, decoded once
        c0 = (it_lo - tap * c_steps) * BLOCK_K
        r = tap // S
        s = tap - r * S
        for it in range(it_lo, it_hi):
            # No channel mask: this path runs only when BLOCK_K divides C (tuning.flat_k).
            offs_c = c0 + tl.arange(0, BLOCK_K)
            if IS_GEMM:
                rows = offs_m * sxw  # x[img, :, p, q] at m*sxw: rows are dense
                ok = mask_m
            else:
                dh = r * dil_h
                dw = s * dil_w
                ih = ih0 + dh
                iw = iw0 + dw
                rows = pix + (dh.to(tl.int64) * sxh + dw.to(tl.int64) * sxw)
                ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_base + rows[:, None] + (offs_c.to(tl.int64) * sxc)[None, :], mask=ok[:, None], other=0.0)
            if has_pre:
                a = _prologue(a, ch_base + offs_c, offs_c < C, ok[:, None], in_scale_ptr, in_shift_ptr,
                              HAS_IN_SCALE, HAS_IN_SHIFT)
            kk = (r * S + s) * C + offs_c
            b = tl.load(w_base + kk[:, None] * K + offs_n[None, :], mask=mask_n[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
            # Next position: the next channel slice, or the first slice of the next tap.
            c0 += BLOCK_K
            next_tap = c0 >= C
            c0 = tl.where(next_tap, 0, c0)
            s = tl.where(next_tap, s + 1, s)
            next_row = s == S
            s = tl.where(next_row, 0, s)
            r = tl.where(next_row, r + 1, r)
    return acc


@triton.jit
def _tile_output(acc, pid_m, pid_n, group, M, P, Q, K, out_ptr, scale_ptr, shift_ptr, res_ptr, ws_ptr,
                 son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                 HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                 OUT_DENSE: tl.constexpr, RES_DENSE: tl.constexpr, EPILOGUE_HALVES: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr):
    """Output tile (pid_m, pid_n) of `group` (int64) from its accumulator: the fused epilogue,
    or with SPLIT this program's fp32 partial sums into the workspace."""
    offs_m, _, _, _, mask_m = _output_pixels(pid_m, M, P, Q, BLOCK_M)
    k0 = group * K + pid_n * BLOCK_N  # global output channel of the tile's first column (int64)
    k_out = k0 + tl.arange(0, BLOCK_N)
    if SPLIT:
        # Partial sums of this program's iteration range; the epilogue runs in splitk_epilogue_kernel.
        KT = tl.num_programs(1) * K  # all output channels
        ws_rows = (tl.program_id(2).to(tl.int64) * M + offs_m) * KT  # row (split, m) of the workspace
        mask_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N) < K  # columns inside the group's K channels
        tl.store(ws_ptr + ws_rows[:, None] + k_out[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])
    else:
        _epilogue_store(acc, offs_m, mask_m, k0, K - pid_n * BLOCK_N, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                        son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                        HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE, EPILOGUE_HALVES)


@triton.jit
def _stream_k_publish(acc, ws_ptr, flags_ptr, slot):
    """Hand a stream-K partial tile to the program that finishes its tile: acc (fp32) to the
    workspace's tile `slot`, then flag `slot` set to 1 (release).

    The whole tile is stored, unmasked (rows past M and columns past K only ever reach a masked
    store). The barrier makes every thread's stores precede the flag write, which Triton issues
    from one thread (a scalar atomic), and the release then covers them all: the order
    CUTLASS's semaphores use, __syncthreads and then one thread's release."""
    BLOCK_M: tl.constexpr = acc.shape[0]
    BLOCK_N: tl.constexpr = acc.shape[1]
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    tl.store(ws_ptr + slot.to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, acc)
    tl.debug_barrier()
    tl.atomic_xchg(flags_ptr + slot, 1, sem="release", scope="gpu")


# Tries of a stream-K flag before the wait gives up (conv_kernel._stream_k_collect): ~16.8M
# atomic round trips through L2 (~0.5-1 us each), seconds of spinning, where a real wait lasts
# at most one tile segment of a program that started no later than the waiting one (microseconds
# to a millisecond). Counted in tries, not time, so a GPU that pauses the whole kernel (time
# slicing with another process) does not run the count out.
STREAM_K_SPIN_LIMIT = tl.constexpr(1 << 24)


@triton.jit
def _stream_k_collect(acc, ws_ptr, flags_ptr, first, slot, SPIN_LIMIT: tl.constexpr):
    """acc plus the partial tiles of slots first, first + 1, ..., slot - 1, in that order (the
    sum does not depend on timing), each taken once its flag is 1. Taking a flag resets it to 0
    (compare-and-swap 1 -> 0, acquire), so the flags are all 0 again when the launch ends and
    the next launch, or the next timing run of the autotuner, starts clean. The partials are
    read through L2 (.cg), past any line of the workspace this SM's L1 may hold.

    A flag still 0 after SPIN_LIMIT tries can only mean a broken hand-over (a bug, not a slow
    program): the tile is then made NaN, so the output says so, instead of the kernel hanging
    the process (a spinning kernel cannot be interrupted, only killed with its context)."""
    BLOCK_M: tl.constexpr = acc.shape[0]
    BLOCK_N: tl.constexpr = acc.shape[1]
    offs = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    q = first
    while q < slot:
        taken = tl.atomic_cas(flags_ptr + q, 1, 0, sem="acquire", scope="gpu") == 1
        tries = 1
        while (not taken) and tries < SPIN_LIMIT:
            taken = tl.atomic_cas(flags_ptr + q, 1, 0, sem="acquire", scope="gpu") == 1
            tries += 1
        partial = tl.load(ws_ptr + q.to(tl.int64) * (BLOCK_M * BLOCK_N) + offs, cache_modifier=".cg")
        acc += tl.where(taken, partial, float("nan"))
        q += 1
    return acc


# Launch-time constexprs and arguments computed from the call and the config, in this order
# (TMA before the descriptors and the schedules that depend on it); aot.py applies the same functions.
_HEURISTICS = {
    "FLAT_K": flat_k,
    "SPLIT": lambda args: args["SPLIT_K"] > 1,
    "EPILOGUE_HALVES": epilogue_halves,
    "TMA": tma_loads,
    "PERSISTENT": persistent,
    "STREAM_K": stream_k,
    "a_desc": tma.a_descriptor,
    "b_desc": tma.b_descriptor,
}


@triton.autotune(configs=autotune_configs(), key=TUNING_KEY, prune_configs_by={"early_config_prune": prune_configs})
@triton.heuristics(_HEURISTICS)
@triton.jit
def conv_bn_act_kernel(
    x_ptr, w_ptr, out_ptr, scale_ptr, shift_ptr, res_ptr, in_scale_ptr, in_shift_ptr,
    ws_ptr,  # fp32 partials: split-K's (SPLIT_K, M, G*K), or stream-K's (G*programs, BLOCK_M*BLOCK_N)
    flags_ptr,  # stream-K: int32 (G*programs), all 0 between launches; unused otherwise
    tap_ptr,  # FLAT_K decode table, int32 (3, R*S*C) (taps.py); unused otherwise
    a_desc, b_desc,  # TMA descriptors of A and B (tma.py); with TMA only, else x (unused)
    # sizes; C and K are channels per (merged) group
    M, H, W, P, Q, C, K,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,  # x strides (elements)
    son, sok, sop, soq,  # out strides
    srn, src, srh, srw,  # residual strides
    res_channels, res_step,  # option-A residual: channels [0, res_channels), every res_step-th pixel
    SPLIT_K,  # programs along grid axis 2, each reducing its own range of the iterations
    R: tl.constexpr, S: tl.constexpr,
    IS_GEMM: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
    OUT_DENSE: tl.constexpr, RES_DENSE: tl.constexpr,  # see _epilogue_store
    HAS_IN_SCALE: tl.constexpr, HAS_IN_SHIFT: tl.constexpr,
    UPCAST: tl.constexpr,  # dot in fp32 (the interpreter's bf16 dot is wrong)
    DOT_PRECISION: tl.constexpr,  # "tf32" or "ieee" for fp32 inputs
    ROW_RUN: tl.constexpr,  # walk the reduction by contiguous (s, c) runs per tap row (narrow C; see below)
    RUN: tl.constexpr,  # ROW_RUN: S*C rounded up to a power of two (the packed weights' row length)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, FLAT_K: tl.constexpr,
    SPLIT: tl.constexpr,  # SPLIT_K > 1: store partials to ws_ptr instead of the epilogue
    EPILOGUE_HALVES: tl.constexpr,  # see _epilogue_store
    TMA_OK: tl.constexpr,  # the call allows TMA loads (tma.applies); part of the autotune key
    TMA: tl.constexpr,  # load A and B by TMA (tuning.tma_loads: the config asks and TMA_OK and BLOCK_K | C)
    PERSISTENT_OK: tl.constexpr,  # the persistent schedule is not switched off; part of the autotune key
    PERSISTENT: tl.constexpr,  # each program walks output tiles (tuning.persistent: asked, allowed, TMA, no split)
    STREAM_K_OK: tl.constexpr,  # the call may run stream-K (tuning.stream_k_allowed); part of the autotune key
    STREAM_K: tl.constexpr,  # programs share the tiles' iterations (tuning.stream_k: asked, allowed, no TMA)
):
    # Grid (one-tile): (M tiles * N tiles, groups, splits). N tiles vary fastest, so the programs
    # running together share their A (activation) tile through L2; the weights are small and
    # stay in L2 anyway. Persistent: (tuning.persistent_programs, groups, 1), program p taking
    # tiles p, p + programs, ... in the same order. Stream-K: (tuning.stream_k_programs, groups, 1).
    group = tl.program_id(1).to(tl.int64)
    num_pid_n = tl.cdiv(K, BLOCK_N)
    iters = _reduction_iters(C, R, S, RUN, BLOCK_K, TMA, ROW_RUN, FLAT_K)
    if PERSISTENT:
        # One loop over this program's tiles and, flattened into it (flatten=True), each tile's
        # reduction: the software pipeliner then issues the next tile's first copies before this
        # tile's epilogue, which they overlap (see benchmarks/NOTES.md). The epilogue takes its
        # tile from a counter of its own (`done`, one stride behind `tile` where it is read), as
        # Triton's persistent matmul does: in the pipelined loop the loads run iterations ahead,
        # and coordinates recomputed at the epilogue need not be kept alive across them.
        tiles = tl.cdiv(M, BLOCK_M) * num_pid_n
        step = tl.num_programs(0)
        done = tl.program_id(0) - step
        for tile in tl.range(tl.program_id(0), tiles, step, flatten=True):
            acc = _tile_accumulator(tile // num_pid_n, tile % num_pid_n, group, x_ptr, w_ptr, in_scale_ptr,
                                    in_shift_ptr, tap_ptr, a_desc, b_desc, M, H, W, P, Q, C, K, stride_h,
                                    stride_w, pad_h, pad_w, dil_h, dil_w, sxn, sxc, sxh, sxw, 0, iters, R, S,
                                    IS_GEMM, HAS_IN_SCALE, HAS_IN_SHIFT, UPCAST, DOT_PRECISION, ROW_RUN, RUN,
                                    BLOCK_M, BLOCK_N, BLOCK_K, FLAT_K, TMA)
            done += step
            _tile_output(acc, done // num_pid_n, done % num_pid_n, group, M, P, Q, K, out_ptr, scale_ptr,
                         shift_ptr, res_ptr, ws_ptr, son, sok, sop, soq, srn, src, srh, srw, res_channels,
                         res_step, HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE, EPILOGUE_HALVES,
                         BLOCK_M, BLOCK_N, SPLIT)
    elif STREAM_K:
        # The group's tiles * iters reduction iterations (tile-major) are dealt out in contiguous
        # ranges of ceil(total / programs), so a range may begin and end inside a tile. A program
        # walks its range backwards, one tile's segment at a time. Only its first segment (the
        # highest) can stop short of its tile's last iteration: that one is handed over as fp32
        # partials. The program holding a tile's last iteration adds the partials of the earlier
        # programs on that tile (the programs from the one holding the tile's first iteration on)
        # and runs the epilogue. Walking backwards, a program publishes before it waits for
        # anything, and it waits only for lower programs: no wait depends on a program that may
        # not have started, and under the interpreter (programs run in order) none ever spins.
        programs = tl.num_programs(0)
        total = tl.cdiv(M, BLOCK_M).to(tl.int64) * num_pid_n * iters
        per_program = tl.cdiv(total, programs)
        lo = tl.program_id(0) * per_program
        end = tl.minimum(lo + per_program, total)
        slots = group * programs  # this group's first partial tile and flag
        while end > lo:
            tile = (end - 1) // iters
            tile_lo = tile * iters
            start = tl.maximum(tile_lo, lo)
            pid_m = (tile // num_pid_n).to(tl.int32)
            pid_n = (tile % num_pid_n).to(tl.int32)
            acc = _tile_accumulator(pid_m, pid_n, group, x_ptr, w_ptr, in_scale_ptr, in_shift_ptr, tap_ptr, a_desc,
                                    b_desc, M, H, W, P, Q, C, K, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                                    sxn, sxc, sxh, sxw, (start - tile_lo).to(tl.int32), (end - tile_lo).to(tl.int32),
                                    R, S, IS_GEMM, HAS_IN_SCALE, HAS_IN_SHIFT, UPCAST, DOT_PRECISION, ROW_RUN,
                                    RUN, BLOCK_M, BLOCK_N, BLOCK_K, FLAT_K, TMA)
            if end < tile_lo + iters:
                _stream_k_publish(acc, ws_ptr, flags_ptr, slots + tl.program_id(0))
            else:
                if start > tile_lo:
                    acc = _stream_k_collect(acc, ws_ptr, flags_ptr, slots + tile_lo // per_program,
                                            slots + tl.program_id(0), STREAM_K_SPIN_LIMIT)
                _tile_output(acc, pid_m, pid_n, group, M, P, Q, K, out_ptr, scale_ptr, shift_ptr, res_ptr, ws_ptr,
                             son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step, HAS_SCALE, HAS_SHIFT,
                             HAS_RES, RELU, OUT_DENSE, RES_DENSE, EPILOGUE_HALVES, BLOCK_M, BLOCK_N, SPLIT)
            end = start
    else:
        pid = tl.program_id(0)
        pid_m = pid // num_pid_n
        pid_n = pid % num_pid_n
        it_lo, it_hi = _split_range(iters, SPLIT_K)
        acc = _tile_accumulator(pid_m, pid_n, group, x_ptr, w_ptr, in_scale_ptr, in_shift_ptr, tap_ptr, a_desc,
                                b_desc, M, H, W, P, Q, C, K, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, sxn,
                                sxc, sxh, sxw, it_lo, it_hi, R, S, IS_GEMM, HAS_IN_SCALE, HAS_IN_SHIFT, UPCAST,
                                DOT_PRECISION, ROW_RUN, RUN, BLOCK_M, BLOCK_N, BLOCK_K, FLAT_K, TMA)
        _tile_output(acc, pid_m, pid_n, group, M, P, Q, K, out_ptr, scale_ptr, shift_ptr, res_ptr, ws_ptr,
                     son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step, HAS_SCALE, HAS_SHIFT,
                     HAS_RES, RELU, OUT_DENSE, RES_DENSE, EPILOGUE_HALVES, BLOCK_M, BLOCK_N, SPLIT)


@triton.jit
def splitk_epilogue_kernel(
    ws_ptr, out_ptr, scale_ptr, shift_ptr, res_ptr,
    M, KT, P, Q, SPLIT_K, ws_split_stride,  # ws is (SPLIT_K, M, KT): ws_split_stride = M*KT
    son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
    OUT_DENSE: tl.constexpr, RES_DENSE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, EPILOGUE_HALVES: tl.constexpr,
):
    """out = epilogue(sum over s of ws[s]) for one (BLOCK_M, BLOCK_N) tile of the (M, KT) output.

    Summed in split order, so the result does not depend on scheduling.
    """
    offs_m, _, _, _, mask_m = _output_pixels(tl.program_id(0), M, P, Q, BLOCK_M)
    k0 = tl.program_id(1).to(tl.int64) * BLOCK_N
    k_out = k0 + tl.arange(0, BLOCK_N)
    mask_n = k_out < KT
    mask = mask_m[:, None] & mask_n[None, :]
    ptrs = ws_ptr + offs_m[:, None] * KT + k_out[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, SPLIT_K):
        acc += tl.load(ptrs, mask=mask, other=0.0)
        ptrs += ws_split_stride  # 64-bit pointer steps: s * M * KT may pass 2^31
    _epilogue_store(acc, offs_m, mask_m, k0, KT - k0, P, Q, out_ptr, scale_ptr, shift_ptr, res_ptr,
                    son, sok, sop, soq, srn, src, srh, srw, res_channels, res_step,
                    HAS_SCALE, HAS_SHIFT, HAS_RES, RELU, OUT_DENSE, RES_DENSE, EPILOGUE_HALVES)
