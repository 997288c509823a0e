// Host launchers of the fused conv. They take raw pointers (ConvParams) and a
// stream, launch on that stream and return the first CUDA error (of a
// cudaFuncSetAttribute or of the launch itself, via cudaGetLastError), so the
// caller checks every launch: C10_CUDA_CHECK in the torch op, a CHECK macro in
// the ctest. T is __half or __nv_bfloat16.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/conv_params.h"

namespace resnet_kernels {

// Whether the tensor-core kernel handles this call: 8 | C/groups (16-byte
// chunks of one tap), 2 | K/groups (paired output stores), 16-byte aligned
// x and w, and a grid within limits. Everything else goes to the direct kernel.
bool implicit_gemm_supports(const ConvParams& p);

// ---- Hopper wgmma kernel (wgmma_conv.cuh) and the choice between the two
// tensor-core kernels, read from the environment variable
// RESNET_KERNELS_CUDA_KERNEL on every call (std::getenv; cheap next to a launch):
//   unset, "" or "mma"  the mma.sync kernel. The default, until the wgmma
//                       kernel has passed its tests on a GPU.
//   "wgmma"             the wgmma kernel where wgmma_available() and it pays
//                       (a compute-bound call, or one whose operands both
//                       come by TMA, whose grid fills the SMs; tile
//                       128x64 for K/groups <= 64, 128x128 or 128x256 by a
//                       wave-count estimate for K/groups >= 128:
//                       select_kernel in wgmma_select.cu), else the mma.sync kernel.
//   "wgmma_n64", "wgmma_n128", "wgmma_n256"  the wgmma kernel with that tile
//                       (128x64, 128x128, 128x256) on every call the
//                       tensor-core path takes (tests, benchmarks); an error
//                       where wgmma is not available.
// Calls that implicit_gemm_supports rejects go to the direct kernel whatever the value.
enum class KernelChoice { kMma, kWgmma, kWgmmaN64, kWgmmaN128, kWgmmaN256, kInvalid };

// How the wgmma kernel brings its operand tiles into shared memory (a
// template parameter of the kernel, chosen per call by plan_conv):
//   kCpAsync  every thread copies 16-byte chunks of A (the gathered
//             activations) and B (the weights) with cp.async;
//   kTmaB     B by the tensor memory accelerator (one TMA copy per k tile,
//             issued by one thread), A by cp.async as above;
//   kTmaAB    both by TMA: calls whose A is a plain matrix (1x1 filter,
//             stride 1, no padding, no pre-activation prologue: A is x
//             viewed as the (N*H*W) x C matrix), see tma_gemm_input_ok;
//   kTmaIm2col both by TMA, A in the tensor unit's im2col mode (one copy per
//             k tile gathers 128 output pixels' channels of one tap, padding
//             zero-filled): other calls with 64 | C/groups and no prologue,
//             see tma_im2col_input_ok (ResNet 3x3s, strided 1x1s).
// RESNET_KERNELS_CUDA_TMA (read on every call): unset, "" or "1" = TMA where
// it applies (the default), "weights" = kTmaB at most, "0" = kCpAsync always.
enum class WgmmaLoads { kCpAsync = 0, kTmaB = 1, kTmaAB = 2, kTmaIm2col = 3 };

// Both operands by TMA (kTmaAB, kTmaIm2col): no thread issues a load.
constexpr bool both_operands_by_tma(WgmmaLoads loads) {
  return loads == WgmmaLoads::kTmaAB || loads == WgmmaLoads::kTmaIm2col;
}
enum class TmaChoice { kAll, kWeights, kNone };

// nullptr when RESNET_KERNELS_CUDA_TMA is unset or a valid value (*choice
// set); else a message naming the variable and its values (the torch op raises it).
const char* tma_from_env(TmaChoice* choice);

// The loads of a wgmma plan for call p: the most TMA `choice` (the parsed
// variable) allows and the call admits (kCpAsync without the driver's
// tensor-map encoders).
WgmmaLoads wgmma_loads(const ConvParams& p, TmaChoice choice);

// Whether TMA can load A of call p (kTmaAB): a 1x1 filter at stride 1 without
// padding or prologue (A rows are x's pixel rows, dense NHWC), M < 2^31
// (TMA coordinates are 32-bit). The alignment TMA needs (16-byte x, 16-byte
// row strides) follows from implicit_gemm_supports (16-byte x, 8 | C/groups).
bool tma_gemm_input_ok(const ConvParams& p);

// Whether im2col TMA can load A of call p (kTmaIm2col): 64 | C/groups (a k
// tile is one tap's 64 channels of one group), no prologue, strides <= 8,
// tap offsets below 2^16 and box corners (pad, pad - (S-1)*dil) within
// [-128, 127] (the limits of a rank-4 im2col map).
bool tma_im2col_input_ok(const ConvParams& p);

// ---- Persistent warp-specialised wgmma kernel (wgmma_ws_conv.cuh): one CTA
// per SM walking the output tiles, a producer warpgroup issuing every TMA
// copy, two consumer warpgroups computing, the residual loaded and the output
// stored by TMA through shared memory. A wgmma plan uses it when its loads
// are kTmaAB or kTmaIm2col and tma_epilogue_ok(p), unless
// RESNET_KERNELS_CUDA_PERSISTENT (read on every call) is "0" (unset, "" or
// "1": where it applies).

// nullptr when RESNET_KERNELS_CUDA_PERSISTENT is unset or valid (*persistent
// set: true = allowed); else a message naming the variable and its values.
const char* persistent_from_env(bool* persistent);

// Whether the epilogue tensors of call p can move by TMA: 8 | K/groups (16-byte
// row strides), y, scale and shift 16-byte aligned, M <= INT_MAX - 128 (32-bit
// TMA coordinates of a tile's rows), and a residual that is absent or has y's
// shape and dense NHWC strides (no option-A channel padding or subsampling),
// 16-byte aligned.
bool tma_epilogue_ok(const ConvParams& p);

// Whether a wgmma plan with these loads runs the persistent kernel: allowed
// (the variable), both operands by TMA, tma_epilogue_ok(p).
bool wgmma_persistent(const ConvParams& p, WgmmaLoads loads, bool allowed);

// The parsed variable; kInvalid for an unknown value.
KernelChoice kernel_choice();

// nullptr when the variable's value can run on `device`; else a message that
// names the variable and its allowed values (the torch op raises it).
const char* kernel_choice_error(int device);

// Compute capability 9.0 and sm_90a code for the wgmma kernels of both dtypes
// in this binary (an sm_80 or plain sm_90 image has only a trapping stub);
// cached per device after the first query, which launches nothing.
bool wgmma_available(int device);

// The kernel for a call implicit_gemm_supports accepts: kMma, kWgmmaN64,
// kWgmmaN128 or kWgmmaN256 in *kernel. `loads`: how a wgmma kernel would load
// the call's operands (wgmma_loads, plan_conv's choice). cudaErrorInvalidValue
// when kernel_choice_error(device) != nullptr.
cudaError_t select_kernel(const ConvParams& p, int device, int num_sms, WgmmaLoads loads, KernelChoice* kernel);

struct ConvPlan;

// wgmma kernel of a wgmma plan (plan.kernel kWgmmaN64/N128/N256, its
// vector_output / vector_residual epilogue; launch_conv_bn_act checks the
// plan first); cudaErrorInvalidDeviceFunction where wgmma is not available
// (its kernels would trap).
template <typename T>
cudaError_t launch_wgmma_conv(const ConvParams& p, const ConvPlan& plan, cudaStream_t stream);

// The persistent kernel of a wgmma plan with plan.persistent (its tile and
// loads; launch_conv_bn_act checks the plan first); cudaErrorInvalidDeviceFunction
// where wgmma is not available.
template <typename T>
cudaError_t launch_wgmma_ws_conv(const ConvParams& p, const ConvPlan& plan, cudaStream_t stream);

// Direct convolution, one thread per output element: any shape, slow.
template <typename T>
cudaError_t launch_direct_conv(const ConvParams& p, cudaStream_t stream);

// ---- Launch plan and split-K (conv_plan.cu, implicit_gemm.cuh, splitk_reduce.cu).
//
// Each call is planned once (plan_conv: kernel, tile, k splits, workspace
// size) and the plan is launched with a workspace the caller allocates
// (launch_conv_bn_act below): the torch op takes it from the caching
// allocator (no cudaMalloc, no sync, CUDA-graph capturable), the ctest from
// cudaMalloc. Split-K: where the mma.sync grid is too small to fill the GPU
// (small batch, late layers), grid.z = split CTAs share each output tile, each
// reducing a contiguous range of k tiles into fp32 partials in the workspace;
// a second kernel sums them in a fixed order (deterministic, no atomics) and
// runs the fused epilogue. The heuristic and its numbers: conv_plan.cu.

struct ConvPlan {
  bool tensor_cores;       // false: the direct kernel (split 1, no workspace)
  KernelChoice kernel;     // tensor_cores: kMma, kWgmmaN64, kWgmmaN128 or kWgmmaN256 (select_kernel)
  int tile_m, tile_n;      // CTA tile of that kernel (0 for the direct kernel)
  int split;               // k splits (grid.z) of the mma.sync kernel; 1 = none (always 1 for the others)
  size_t workspace_bytes;  // split > 1: split * M * K * sizeof(float); else 0
  bool vector_output;      // 16-byte output stores (staged epilogue of either GEMM kernel, or the split-K reduce)
  bool vector_residual;    // ... and 16-byte residual loads
  WgmmaLoads loads;        // wgmma plans: how the operand tiles are loaded (kCpAsync for the others)
  bool persistent;         // wgmma plans: the persistent warp-specialised kernel (wgmma_persistent)
};

// RESNET_KERNELS_CUDA_SPLIT_K, read with std::getenv on every call (cheap next
// to a launch): unset, "" or "0" = the heuristic; n in 1..65535 forces n
// splits on the mma.sync kernel (clamped to its number of k tiles; 1 = never
// split). nullptr with *forced_split set (0 = heuristic); else a message that
// names the variable and its allowed values (the torch op raises it).
const char* split_k_from_env(int* forced_split);

// Multiprocessor count of `device`: cudaDeviceGetAttribute once per device,
// then a cached value (one relaxed atomic load per call).
cudaError_t multiprocessor_count(int device, int* count);

// The plan of call p on `device` (num_sms multiprocessors). forced_split: 0 =
// the heuristic, n >= 1 = min(n, k tiles) splits where the mma.sync kernel
// runs. Errors: cudaErrorInvalidValue for a bad RESNET_KERNELS_CUDA_KERNEL or
// forced_split outside 0..65535, else what select_kernel returns.
cudaError_t plan_conv(const ConvParams& p, int device, int num_sms, int forced_split, ConvPlan* plan);

// Whether `plan` can run call p with this workspace: what plan_conv would
// give for p under some choice of kernel, tile and split (vector paths only
// where p's alignment allows them), and for split > 1 a 16-byte aligned
// workspace of at least split * M * K floats.
bool plan_fits(const ConvParams& p, const ConvPlan& plan, const void* workspace, size_t workspace_bytes);

// The entry point: launches `plan` (from plan_conv for this p) on `stream`.
// workspace: at least plan.workspace_bytes, 16-byte aligned, any contents
// (every byte read is written first), unused once the launch's kernels have
// run (stream order); nullptr when plan.workspace_bytes == 0.
// cudaErrorInvalidValue when !plan_fits(p, plan, workspace, workspace_bytes).
template <typename T>
cudaError_t launch_conv_bn_act(const ConvParams& p, const ConvPlan& plan, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream);

// The same without a workspace: plans on the current device with split 1
// (never splits; RESNET_KERNELS_CUDA_SPLIT_K is not read) and launches.
template <typename T>
cudaError_t launch_conv_bn_act(const ConvParams& p, cudaStream_t stream);

// The two kernels of an mma.sync plan (implicit_gemm.cuh, splitk_reduce.cu);
// launch_conv_bn_act calls them after checking the plan.
template <typename T>
cudaError_t launch_implicit_gemm(const ConvParams& p, const ConvPlan& plan, void* workspace, cudaStream_t stream);
template <typename T>
cudaError_t launch_splitk_reduce(const ConvParams& p, const ConvPlan& plan, const float* partials,
                                 cudaStream_t stream);

}  // namespace resnet_kernels
