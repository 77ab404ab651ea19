// The boundary between the host launcher (corr2d_cuda.cpp, compiled by the C++ compiler with
// torch's headers) and the kernels (corr2d_kernel.cu, compiled by nvcc without them: a .cu
// that includes torch/extension.h takes minutes to compile).
//
// T is the CUDA-native element type: float, double, __half or __nv_bfloat16. All tensors are
// contiguous; every launch goes on `stream` and is followed by a launch check.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "../corr2d.h"
#include "../forward_form.h"

namespace corr2d_ext {
namespace cuda {

// Whether the tiled kernels' 32-bit index arithmetic is exact: every in-plane offset, every
// patch corner (o * stride - padding, possibly negative) and every in-plane input index.
inline bool tiled_fits_int32(const Geometry& g) {
  constexpr int64_t lim = (int64_t{1} << 31) - 1;
  const auto axis_fits = [](const Axis& a) {
    return a.input < lim && a.output < lim && a.padding < lim / 4 && a.padding > -lim / 4 &&
           a.output * a.stride < lim / 4 && a.kernel * a.dilation < lim / 4;
  };
  return axis_fits(g.rows) && axis_fits(g.cols) && g.input_plane() < lim &&
         g.output_plane() < lim && g.out_channels < lim;
}

// The tiled weight gradient (weight_grad_tiled_kernel<T, OCB, TB>): output channels per block
// and taps per warp, 8 x 3 in general and 1 x 9 for one output channel per group (depthwise,
// single-channel), where 8 would leave 7 idle; warps per block at most.
constexpr int kWgChannels = 8;
constexpr int kWgTaps = 3;
constexpr int kWgTapsOneChannel = 9;
constexpr int kWgMaxWarps = 8;
// Its shared memory, in words, sized for double so that the plan is the same for every dtype.
constexpr int64_t kWgSharedWords = 48 * 1024 / 8;

// The output tiles the tiled weight gradient's sum walks through.
struct WgTile {
  int tile_rows;
  int tile_cols;
  int patch_rows;
  int patch_cols;
  int patch_words;  // rounded up to 4: the grad_output tile after it stays 16-byte aligned
  int warps;        // warps per input channel: tap groups per chunk
  int channels;     // input channels per block (warps * channels <= kWgMaxWarps)
  int64_t c_blocks;   // per group, of `channels`
  int64_t tiles_w;
  int64_t tiles_h;
  int64_t oc_blocks;  // per group, of `ocb`
  int ocb;            // output channels per block: kWgChannels, or 1
  int tb;             // taps per warp: kWgTaps, or kWgTapsOneChannel
  int64_t tiles;      // batch * tiles_h * tiles_w: the length of the sum, in tiles
};

// How the weight gradient's sum over (n, oh, ow) is cut up. Tiled: each block reduces one
// slice of the tiles for kWgChannels output channels x `channels` input channels x a chunk of
// warps * kWgTaps taps. Otherwise (64-bit indices, or a patch too large for shared memory):
// each block reduces one slice of that sum for one (oc, c) filter and up to kWeightGradTaps
// kernel taps. Either way the slices' partial sums are then added in slice order. The plan
// depends on the geometry alone, never on the device, the dtype or timing, so the result is
// bitwise the same on every run.
constexpr int kWeightGradTaps = 9;

struct WeightGradPlan {
  int64_t tap_chunks;  // tiled: ceil(kernel_area / (warps * tb)); else / kWeightGradTaps
  int64_t slices;      // 1 means the blocks write grad_weight directly
  bool tiled;
  WgTile tile;
};

inline WeightGradPlan plan_weight_grad(const Geometry& g) {
  // Enough blocks to fill a large GPU (~132 SMs x a few blocks), but enough work per slice
  // that each thread adds several terms before the reduction.
  constexpr int64_t kTargetBlocks = 512;
  constexpr int64_t kMinSliceLength = 2048;
  const int64_t sum_length = g.batch * g.output_plane();
  const auto slices_for = [&](int64_t base, int64_t max_slices) {
    int64_t slices = (kTargetBlocks + base - 1) / base;
    if (slices > max_slices) slices = max_slices;
    return slices < 1 ? int64_t{1} : slices;
  };
  if (tiled_fits_int32(g)) {
    WgTile t{};
    const int64_t ka = g.kernel_area();
    const int64_t tiles_w = (g.cols.output + 31) / 32;
    t.tile_cols = static_cast<int>((g.cols.output + tiles_w - 1) / tiles_w);
    const int64_t rows_max = 256 / t.tile_cols;
    const int64_t tiles_h = (g.rows.output + rows_max - 1) / rows_max;
    t.tile_rows = static_cast<int>((g.rows.output + tiles_h - 1) / tiles_h);
    const int64_t rows = (t.tile_rows - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1;
    const int64_t cols = (t.tile_cols - 1) * g.cols.stride + (g.cols.kernel - 1) * g.cols.dilation + 1;
    const bool one = g.out_channels_per_group() == 1;
    t.ocb = one ? 1 : kWgChannels;
    t.tb = one ? kWgTapsOneChannel : kWgTaps;
    const int64_t gy_words = int64_t{t.tile_rows} * t.tile_cols * t.ocb;
    if (rows <= kWgSharedWords && cols <= kWgSharedWords &&
        (rows * cols + 3) / 4 * 4 + gy_words <= kWgSharedWords) {
      t.patch_rows = static_cast<int>(rows);
      t.patch_cols = static_cast<int>(cols);
      t.patch_words = static_cast<int>((rows * cols + 3) / 4 * 4);
      const int64_t tap_groups = (ka + t.tb - 1) / t.tb;
      t.warps = static_cast<int>(tap_groups < kWgMaxWarps ? tap_groups : kWgMaxWarps);
      // The warps left over take further input channels: each staged grad_output value then
      // serves them all (fewer re-reads of grad_output from L2), as shared memory allows.
      int64_t channels = kWgMaxWarps / t.warps;
      if (channels > g.in_channels_per_group()) channels = g.in_channels_per_group();
      while (channels > 1 && channels * t.patch_words + gy_words > kWgSharedWords) --channels;
      t.channels = static_cast<int>(channels);
      t.c_blocks = (g.in_channels_per_group() + channels - 1) / channels;
      t.tiles_w = tiles_w;
      t.tiles_h = tiles_h;
      t.oc_blocks = (g.out_channels_per_group() + t.ocb - 1) / t.ocb;
      t.tiles = g.batch * tiles_h * tiles_w;
      const int64_t tap_chunks = (tap_groups + t.warps - 1) / t.warps;
      const int64_t base = g.groups * t.oc_blocks * t.c_blocks * tap_chunks;
      // at least ~2048 terms per slice here too
      const int64_t tile_px = int64_t{t.tile_rows} * t.tile_cols;
      const int64_t min_tiles = (kMinSliceLength + tile_px - 1) / tile_px;
      return {tap_chunks, slices_for(base, (t.tiles + min_tiles - 1) / min_tiles), true, t};
    }
  }
  const int64_t filters = g.out_channels * g.in_channels_per_group();
  const int64_t tap_chunks = (g.kernel_area() + kWeightGradTaps - 1) / kWeightGradTaps;
  const int64_t base = filters * tap_chunks;
  return {tap_chunks,
          slices_for(base, (sum_length + kMinSliceLength - 1) / kMinSliceLength), false, {}};
}

// Element count of the float (double for double) workspace launch_weight_grad needs: zero
// when plan.slices == 1.
inline int64_t weight_grad_workspace(const Geometry& g, const WeightGradPlan& plan) {
  if (plan.slices == 1) return 0;
  return g.out_channels * g.in_channels_per_group() * g.kernel_area() * plan.slices;
}

template <typename T>
void launch_forward(const Geometry& g, const T* input, const T* weight, const T* bias, T* output,
                    cudaStream_t stream);

// The forward kernels' tuning: output channels per thread and pixels per thread for the general
// tiled path, and pixels per thread for the path of one output channel per group (depthwise,
// single-channel): 8, so that each staged weight serves 8 FMAs (9 shared loads per 8 FMAs).
constexpr int kChannelBlock = 8;
constexpr int kPixels = 4;
constexpr int kPixelsOneToOne = 8;

// The input gradient, stride phase by stride phase (input_grad_phases, ../forward_form.h):
// each phase through the forward kernels, reading the weight flipped and transposed in place
// and writing every stride-th pixel of grad_input; the phases no tap reaches are zero-filled
// by one more launch.
template <typename T>
void launch_input_grad(const Geometry& g, const T* grad_output, const T* weight, T* grad_input,
                       cudaStream_t stream);

// workspace: weight_grad_workspace(g, plan) elements of float (double when T is double).
template <typename T>
void launch_weight_grad(const Geometry& g, const WeightGradPlan& plan, const T* input,
                        const T* grad_output, void* workspace, T* grad_weight,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace corr2d_ext
