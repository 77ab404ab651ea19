// CPU kernels of the three ops: direct loops over the geometry, no im2col, no BLAS.
//
// These are the portable kernels: every dtype, any CPU, and the reference that every fast-path
// instantiation (ukernels.h) is tested against. dispatch.cpp decides which runs.
//
// Every kernel is a loop over rows of its result. A row (one image, one channel, one output
// row) is owned by exactly one task, accumulated in a small buffer of the op-math type and
// written once, so there are no atomics, no races, and results do not depend on the thread
// count. The index math is the shared Axis helpers of corr2d.h, the same the CUDA kernels use.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include "cpu.h"

namespace corr2d_ext {
namespace cpu {
namespace portable {
namespace {

// Enough multiply-adds per task that starting a thread pays for itself; a problem smaller than
// one grain (the tutorial's 6x8 image) runs inline on the calling thread.
constexpr int64_t kMinMacsPerTask = 1 << 15;

int64_t grain_for(int64_t macs_per_item) {
  return std::max<int64_t>(1, kMinMacsPerTask / std::max<int64_t>(1, macs_per_item));
}

// acc[o] += w * in[o * stride + first] for o in [begin, end): one kernel tap along one row.
// opmath_t is float for float/half/bfloat16 and double for double.
template <typename scalar_t, typename opmath_t>
inline void axpy_strided(opmath_t* acc, const scalar_t* in, opmath_t w, int64_t begin,
                         int64_t end, int64_t stride, int64_t first) {
  if (stride == 1) {
    const scalar_t* src = in + first;
    for (int64_t o = begin; o < end; ++o) acc[o] += w * static_cast<opmath_t>(src[o]);
  } else {
    for (int64_t o = begin; o < end; ++o)
      acc[o] += w * static_cast<opmath_t>(in[o * stride + first]);
  }
}

// Zero padding is zeros: F.conv2d's reference paths (float64, im2col) multiply the padded
// zeros by the weights, so an inf or NaN weight makes NaN wherever its tap falls on padding
// (and, in the weight gradient, an inf or NaN grad_output does the same). The loops here skip
// padded positions for speed; these add back the one case where a zero product is not zero.
template <typename opmath_t>
inline void add_padding_products(opmath_t* acc, opmath_t w, int64_t begin, int64_t end,
                                 int64_t n) {
  if (std::isfinite(w)) return;
  const opmath_t nan = w * opmath_t(0);
  for (int64_t o = 0; o < begin; ++o) acc[o] += nan;
  for (int64_t o = end; o < n; ++o) acc[o] += nan;
}

template <typename scalar_t>
void forward_impl(const Geometry& g, const scalar_t* input, const scalar_t* weight,
                  const scalar_t* bias, scalar_t* output) {
  using opmath_t = at::opmath_type<scalar_t>;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t n_rows = g.batch * g.out_channels * rows.output;
  const int64_t macs_per_row = cols.output * cin_g * g.kernel_area();
  at::parallel_for(0, n_rows, grain_for(macs_per_row), [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(cols.output);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t oh = r % rows.output;
      const int64_t oc = (r / rows.output) % g.out_channels;
      const int64_t n = r / (rows.output * g.out_channels);
      const int64_t c0 = g.first_input_channel(g.group_of_output_channel(oc));
      std::fill(acc.begin(), acc.end(), bias ? static_cast<opmath_t>(bias[oc]) : opmath_t(0));
      for (int64_t c = 0; c < cin_g; ++c) {
        const scalar_t* plane = input + g.input_offset(n, c0 + c);
        const scalar_t* w = weight + g.weight_offset(oc, c);
        const int64_t kh_begin = rows.tap_begin(oh), kh_end = rows.tap_end(oh);
        for (int64_t kh = 0; kh < rows.kernel; ++kh) {
          const bool padded_row = kh < kh_begin || kh >= kh_end;
          const scalar_t* in_row =
              padded_row ? nullptr : plane + rows.input_index(oh, kh) * cols.input;
          for (int64_t kw = 0; kw < cols.kernel; ++kw) {
            const opmath_t wv = static_cast<opmath_t>(w[kh * cols.kernel + kw]);
            if (padded_row) {
              add_padding_products(acc.data(), wv, 0, 0, cols.output);
              continue;
            }
            const int64_t begin = cols.output_begin(kw), end = cols.output_end(kw);
            axpy_strided(acc.data(), in_row, wv, begin, end, cols.stride, cols.input_index(0, kw));
            add_padding_products(acc.data(), wv, begin, end, cols.output);
          }
        }
      }
      scalar_t* out_row = output + g.output_offset(n, oc) + oh * cols.output;
      for (int64_t ow = 0; ow < cols.output; ++ow) out_row[ow] = static_cast<scalar_t>(acc[ow]);
    }
  });
}

// grad_input[n, c, ih, :] gathers every output that read input row ih: through tap kh, row ih
// was read by output row rows.output_index(ih, kh), if any. Within the row the task scatters
// into its own buffer, so nothing is shared between tasks.
template <typename scalar_t>
void input_grad_impl(const Geometry& g, const scalar_t* grad_output, const scalar_t* weight,
                     scalar_t* grad_input) {
  using opmath_t = at::opmath_type<scalar_t>;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t cout_g = g.out_channels_per_group();
  const int64_t n_rows = g.batch * g.in_channels * rows.input;
  const int64_t macs_per_row = cols.output * cout_g * g.kernel_area();
  at::parallel_for(0, n_rows, grain_for(macs_per_row), [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(cols.input);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t ih = r % rows.input;
      const int64_t c = (r / rows.input) % g.in_channels;
      const int64_t n = r / (rows.input * g.in_channels);
      const int64_t group = c / cin_g;
      const int64_t c_in_group = c % cin_g;
      std::fill(acc.begin(), acc.end(), opmath_t(0));
      for (int64_t oc = group * cout_g; oc < (group + 1) * cout_g; ++oc) {
        const scalar_t* gy_plane = grad_output + g.output_offset(n, oc);
        const scalar_t* w = weight + g.weight_offset(oc, c_in_group);
        for (int64_t kh = 0; kh < rows.kernel; ++kh) {
          const int64_t oh = rows.output_index(ih, kh);
          if (oh < 0) continue;
          const scalar_t* gy_row = gy_plane + oh * cols.output;
          for (int64_t kw = 0; kw < cols.kernel; ++kw) {
            const opmath_t wv = static_cast<opmath_t>(w[kh * cols.kernel + kw]);
            const int64_t ow_end = cols.output_end(kw);
            for (int64_t ow = cols.output_begin(kw); ow < ow_end; ++ow)
              acc[cols.input_index(ow, kw)] += wv * static_cast<opmath_t>(gy_row[ow]);
          }
        }
      }
      scalar_t* dst = grad_input + g.input_offset(n, c) + ih * cols.input;
      for (int64_t iw = 0; iw < cols.input; ++iw) dst[iw] = static_cast<scalar_t>(acc[iw]);
    }
  });
}

// grad_weight[oc, c, kh, kw] = sum over n, oh, ow of grad_output * input. With few weights
// (one channel, depthwise) the sum over (n, oh) is split into chunks whose number depends only
// on the geometry, each chunk summed by one task into its own slot, and the slots added in
// chunk order: the same additions in the same order for any thread count.
template <typename scalar_t>
void weight_grad_impl(const Geometry& g, const scalar_t* input, const scalar_t* grad_output,
                      scalar_t* grad_weight) {
  using opmath_t = at::opmath_type<scalar_t>;
  const Axis& rows = g.rows;
  const Axis& cols = g.cols;
  const int64_t cin_g = g.in_channels_per_group();
  const int64_t ka = g.kernel_area();
  const int64_t n_filters = g.out_channels * cin_g;  // one (oc, c) kernel plane each
  const int64_t n_sum_rows = g.batch * rows.output;
  // Aim for at least 64 independent tasks; never more chunks than rows.
  constexpr int64_t kMinTasks = 64;
  const int64_t n_chunks =
      std::min(n_sum_rows, std::max<int64_t>(1, (kMinTasks + n_filters - 1) / n_filters));
  const int64_t rows_per_chunk = (n_sum_rows + n_chunks - 1) / n_chunks;
  std::vector<opmath_t> partial(n_filters * n_chunks * ka);
  const int64_t macs_per_task = rows_per_chunk * cols.output * ka;
  at::parallel_for(0, n_filters * n_chunks, grain_for(macs_per_task), [&](int64_t begin,
                                                                          int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t chunk = t % n_chunks;
      const int64_t filter = t / n_chunks;
      const int64_t c = filter % cin_g;
      const int64_t oc = filter / cin_g;
      const int64_t c_abs = g.first_input_channel(g.group_of_output_channel(oc)) + c;
      opmath_t* acc = partial.data() + t * ka;
      std::fill(acc, acc + ka, opmath_t(0));
      const int64_t r_end = std::min(n_sum_rows, (chunk + 1) * rows_per_chunk);
      for (int64_t r = chunk * rows_per_chunk; r < r_end; ++r) {
        const int64_t n = r / rows.output;
        const int64_t oh = r % rows.output;
        const scalar_t* gy_row = grad_output + g.output_offset(n, oc) + oh * cols.output;
        const scalar_t* plane = input + g.input_offset(n, c_abs);
        // See add_padding_products: a non-finite grad_output times a padded zero is NaN.
        bool nonfinite_row = false;
        for (int64_t ow = 0; ow < cols.output; ++ow)
          nonfinite_row |= !std::isfinite(static_cast<opmath_t>(gy_row[ow]));
        const opmath_t padding_product =
            nonfinite_row ? std::numeric_limits<opmath_t>::quiet_NaN() : opmath_t(0);
        const int64_t kh_begin = rows.tap_begin(oh), kh_end = rows.tap_end(oh);
        for (int64_t kh = 0; kh < rows.kernel; ++kh) {
          if (kh < kh_begin || kh >= kh_end) {
            for (int64_t kw = 0; kw < cols.kernel; ++kw) acc[kh * cols.kernel + kw] += padding_product;
            continue;
          }
          const scalar_t* in_row = plane + rows.input_index(oh, kh) * cols.input;
          for (int64_t kw = 0; kw < cols.kernel; ++kw) {
            opmath_t dot = 0;
            const int64_t ow_begin = cols.output_begin(kw), ow_end = cols.output_end(kw);
            for (int64_t ow = ow_begin; ow < ow_end; ++ow)
              dot += static_cast<opmath_t>(gy_row[ow]) *
                     static_cast<opmath_t>(in_row[cols.input_index(ow, kw)]);
            if (nonfinite_row) {
              for (int64_t ow = 0; ow < ow_begin; ++ow)
                dot += static_cast<opmath_t>(gy_row[ow]) * opmath_t(0);
              for (int64_t ow = ow_end; ow < cols.output; ++ow)
                dot += static_cast<opmath_t>(gy_row[ow]) * opmath_t(0);
            }
            acc[kh * cols.kernel + kw] += dot;
          }
        }
      }
    }
  });
  for (int64_t filter = 0; filter < n_filters; ++filter) {
    for (int64_t k = 0; k < ka; ++k) {
      opmath_t sum = 0;
      for (int64_t chunk = 0; chunk < n_chunks; ++chunk)
        sum += partial[(filter * n_chunks + chunk) * ka + k];
      grad_weight[filter * ka + k] = static_cast<scalar_t>(sum);
    }
  }
}

}  // namespace

void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "corr2d_cpu", [&] {
    forward_impl<scalar_t>(g, input.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                           bias ? bias->const_data_ptr<scalar_t>() : nullptr,
                           output.mutable_data_ptr<scalar_t>());
  });
}

void input_grad(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                const at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_output.scalar_type(),
                                  "corr2d_input_grad_cpu", [&] {
    input_grad_impl<scalar_t>(g, grad_output.const_data_ptr<scalar_t>(),
                              weight.const_data_ptr<scalar_t>(),
                              grad_input.mutable_data_ptr<scalar_t>());
  });
}

void weight_grad(const Geometry& g, const at::Tensor& input, const at::Tensor& grad_output,
                 const at::Tensor& grad_weight) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "corr2d_weight_grad_cpu", [&] {
    weight_grad_impl<scalar_t>(g, input.const_data_ptr<scalar_t>(),
                               grad_output.const_data_ptr<scalar_t>(),
                               grad_weight.mutable_data_ptr<scalar_t>());
  });
}

}  // namespace portable
}  // namespace cpu
}  // namespace corr2d_ext
