// Every correlation in forward form, for both backends.
//
// A forward-form correlation is src (N, C_src, H, W) correlated with a weight into dst
// (N, C_dst, H_out, W_out), as a Geometry (corr2d.h) plus two layouts: where each weight tap
// and each dst pixel lives. The forward op is one such correlation over contiguous tensors.
// The input gradient is, stride phase by stride phase, the correlation of grad_output (the
// src) with a sub-kernel of the weight, flipped and transposed and read in place, into every
// stride-th pixel of grad_input (the dst): input_grad_phases() below. The CPU fast path
// (cpu/plan.h) and the CUDA launcher (cuda/corr2d_kernel.cu) take the same phases.
//
// Host code only, no torch include (nvcc compiles it into the .cu file).
#pragma once

#include <cstdint>
#include <vector>

#include "corr2d.h"

namespace corr2d_ext {

// Where element (dst channel d, src channel s of d's group, tap (kh, kw)) of the forward-form
// weight lives in the weight tensor: group(d) * group + (d mod C_dst/groups) * dst + s * src
// + kh * tap_row + kw * tap_col + offset. The forward op reads OIHW as it is; the input
// gradient reads it flipped (negative tap strides) and transposed (dst and src swapped)
// without a copy of the weight.
struct WeightLayout {
  int64_t group, dst, src, tap_row, tap_col, offset;
};

// The weight tensor's strides, dims (O, I, H, W): contiguous OIHW, or what a backend that
// takes channels_last weights is handed (OHWI).
struct WeightStrides {
  int64_t dst, src, row, col;
};

inline WeightStrides contiguous_weight_strides(const Geometry& g) {
  const int64_t ka = g.kernel_area();
  return {g.in_channels_per_group() * ka, ka, g.cols.kernel, 1};
}

inline WeightLayout forward_weight_layout(const Geometry& g, const WeightStrides& s) {
  return {g.out_channels_per_group() * s.dst, s.dst, s.src, s.row, s.col, 0};
}
inline WeightLayout forward_weight_layout(const Geometry& g) {
  return forward_weight_layout(g, contiguous_weight_strides(g));
}

// The taps at either end of each axis that read only padding, for every output, cut off: the
// kernel shortened, the padding less by the taps cut, the weight's view moved to the first tap
// kept. The output is unchanged; the multiply-adds by zeros are gone. A 3x3 kernel with padding
// 1 on a 1x1 map (a CIFAR-sized ResNet's last stage) keeps its centre tap: 1 in 9 of the work.
// An axis with no tap inside the input at all is left as it is.
inline void drop_padding_taps(Axis& a, int64_t tap_step, int64_t& offset) {
  const auto reads_input = [&](int64_t k) { return a.output_begin(k) < a.output_end(k); };
  int64_t first = 0, last = a.kernel - 1;
  while (first <= last && !reads_input(first)) ++first;
  while (last >= first && !reads_input(last)) --last;
  if (first > last) return;
  a.padding -= first * a.dilation;
  a.kernel = last - first + 1;
  offset += first * tap_step;
}

inline void drop_padding_taps(Geometry& g, WeightLayout& wl) {
  drop_padding_taps(g.rows, wl.tap_row, wl.offset);
  drop_padding_taps(g.cols, wl.tap_col, wl.offset);
}

// Whether drop_padding_taps cuts any tap of `g`'s kernel. F.conv2d's definition multiplies
// those taps' weights by the padding's zeros, so where one of them is inf or NaN the output is
// NaN: a call with a non-finite weight and such taps is not for the kernels that drop them.
inline bool has_padding_taps(const Geometry& g) {
  Geometry cut = g;
  WeightLayout unused{};
  drop_padding_taps(cut, unused);
  return cut.kernel_area() != g.kernel_area();
}

// Where dst element (image n, channel d, row y, column x) of a forward-form correlation is
// written: n * image + d * channel + y * row + x * col + offset. A plain correlation writes a
// contiguous NCHW tensor; a phase of the input gradient writes every stride-th pixel of one.
struct DstLayout {
  int64_t image, channel, row, col, offset;
};

inline DstLayout contiguous_dst_layout(const Geometry& g) {
  return {g.out_channels * g.output_plane(), g.output_plane(), g.cols.output, 1, 0};
}

// The input gradient, as forward-form correlations of grad_output into grad_input, one per
// stride phase (as oneDNN's strided backward-data does): the input pixels (i0 + stride * m) of
// one residue i0 per axis receive grad_output through the taps k with i0 + padding - k *
// dilation divisible by the stride only, an arithmetic progression of taps, so each phase is a
// stride-1 correlation with a sub-kernel of about kernel / stride taps and no multiplication by
// inserted zeros. At stride 1 there is one phase, the whole flipped kernel. A phase with no
// taps at all (a 1x1 kernel at stride 2, say) receives nothing: its pixels are zero, and
// `taps` says so.
struct InputGradPhase {
  Geometry g;       // stride 1, padding possibly negative (cropping)
  WeightLayout wl;  // the sub-kernel, flipped and transposed, read in place
  DstLayout dst;    // every stride-th pixel of grad_input, from the phase's first
  bool taps;        // false: no tap reaches these pixels
};

namespace detail {

// One axis of one input-gradient phase: the input indices i0, i0 + s, ... and the taps k
// with (i0 + padding - k * dilation) divisible by the stride s. Those taps are k0, k0 + step,
// ... (step = s / gcd(s, d)); tap k0 + t * step meets grad_output index m + (i0 + padding - k0
// * d) / s - t * (d / gcd(s, d)), so reading the taps in reverse order makes a correlation with
// dilation d / gcd(s, d) and padding (taps - 1) * that - (i0 + padding - k0 * d) / s.
struct PhaseAxis {
  Axis axis;          // forward form: grad_output length in, phase length out, stride 1
  int64_t first_tap;  // the original tap of the sub-kernel's last tap (k0)
  int64_t tap_step;   // original taps between two of the sub-kernel's
  int64_t taps;       // 0: no tap reaches this phase
};

inline int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

inline PhaseAxis phase_axis(const Axis& a, int64_t i0) {
  const int64_t outputs = (a.input - i0 + a.stride - 1) / a.stride;  // phase length
  int64_t k0 = -1, taps = 0;
  for (int64_t k = 0; k < a.kernel; ++k)
    if ((i0 + a.padding - k * a.dilation) % a.stride == 0) {
      if (k0 < 0) k0 = k;
      ++taps;
    }
  const int64_t g = gcd(a.stride, a.dilation);
  const int64_t step = a.stride / g, dilation = a.dilation / g;
  if (taps == 0) return {Axis{a.output, outputs, 1, 1, 0, 1}, 0, step, 0};
  const int64_t shift = (i0 + a.padding - k0 * a.dilation) / a.stride;  // exact
  return {Axis{a.output, outputs, taps, 1, (taps - 1) * dilation - shift, dilation}, k0, step,
          taps};
}

}  // namespace detail

inline std::vector<InputGradPhase> input_grad_phases(const Geometry& g, const WeightStrides& s) {
  const int64_t in_plane = g.input_plane();
  std::vector<InputGradPhase> phases;
  const int64_t row_phases = g.rows.stride < g.rows.input ? g.rows.stride : g.rows.input;
  const int64_t col_phases = g.cols.stride < g.cols.input ? g.cols.stride : g.cols.input;
  for (int64_t r0 = 0; r0 < row_phases; ++r0)
    for (int64_t c0 = 0; c0 < col_phases; ++c0) {
      const detail::PhaseAxis rows = detail::phase_axis(g.rows, r0);
      const detail::PhaseAxis cols = detail::phase_axis(g.cols, c0);
      InputGradPhase p;
      p.g = Geometry{g.batch, g.out_channels, g.in_channels, g.groups, rows.axis, cols.axis};
      p.taps = rows.taps > 0 && cols.taps > 0;
      // Sub-kernel tap (jh, jw) is original tap (k0h + (Th - 1 - jh) * step_h, same for w):
      // read backwards, from the last.
      const int64_t last_h = rows.first_tap + (rows.taps - 1) * rows.tap_step;
      const int64_t last_w = cols.first_tap + (cols.taps - 1) * cols.tap_step;
      p.wl = WeightLayout{g.out_channels_per_group() * s.dst, s.src, s.dst,
                          -rows.tap_step * s.row, -cols.tap_step * s.col,
                          last_h * s.row + last_w * s.col};
      p.dst = DstLayout{g.in_channels * in_plane, in_plane, g.rows.stride * g.cols.input,
                        g.cols.stride, r0 * g.cols.input + c0};
      phases.push_back(p);
    }
  return phases;
}
inline std::vector<InputGradPhase> input_grad_phases(const Geometry& g) {
  return input_grad_phases(g, contiguous_weight_strides(g));
}

}  // namespace corr2d_ext
