// The geometry of a 2-D cross-correlation, and the index arithmetic every kernel shares.
//
// This header is plain C++ with no torch include, so that nvcc compiles it quickly inside the
// .cu file and the CPU kernels (and, through the _C test hooks, the CPU tests) run exactly the
// same index math as the CUDA kernels.
//
// One spatial axis of the correlation relates an output index o, a kernel tap k and an input
// index i by
//
//     i = o * stride - padding + k * dilation.
//
// Everything below is that one line solved for whichever index a loop needs.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define CORR2D_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CORR2D_HOST_DEVICE inline
#endif

namespace corr2d_ext {

// Output length of one axis. T is int64_t for real tensors and c10::SymInt for the meta
// kernel. The caller has already checked that the dilated kernel fits the padded input, so the
// numerator is never negative and '/' (truncating) is the floor division the formula means.
template <typename T>
CORR2D_HOST_DEVICE T output_size(const T& input, const T& kernel, int64_t stride,
                                 int64_t padding, int64_t dilation) {
  return (input + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

// Ceiling division for a non-negative divisor; correct for negative numerators too (C++ '/'
// truncates towards zero, which is the ceiling only for negative quotients).
CORR2D_HOST_DEVICE int64_t div_ceil(int64_t a, int64_t b) {
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

// Floor division for a positive divisor, any sign of numerator.
CORR2D_HOST_DEVICE int64_t div_floor(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

CORR2D_HOST_DEVICE int64_t clamp_index(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// One spatial axis (rows or columns).
struct Axis {
  int64_t input;     // input length
  int64_t output;    // output length
  int64_t kernel;    // kernel length (taps)
  int64_t stride;
  int64_t padding;   // zeros added before index 0 (and after the end)
  int64_t dilation;

  // The input index that output o reads through tap k; may fall in the padding (< 0 or >=
  // input), which the loops below never visit.
  CORR2D_HOST_DEVICE int64_t input_index(int64_t o, int64_t k) const {
    return o * stride - padding + k * dilation;
  }

  // Outputs o in [output_begin(k), output_end(k)) are those whose tap k lands inside the input.
  // A kernel loops over them without a bounds test in its innermost loop.
  CORR2D_HOST_DEVICE int64_t output_begin(int64_t k) const {
    // o * stride >= padding - k * dilation
    return clamp_index(div_ceil(padding - k * dilation, stride), 0, output);
  }
  CORR2D_HOST_DEVICE int64_t output_end(int64_t k) const {
    // o * stride <= input - 1 + padding - k * dilation
    const int64_t last = div_floor(input - 1 + padding - k * dilation, stride);
    const int64_t end = clamp_index(last + 1, 0, output);
    const int64_t begin = output_begin(k);
    return end < begin ? begin : end;
  }

  // Taps k in [tap_begin(o), tap_end(o)) are those through which output o reads inside the
  // input.
  CORR2D_HOST_DEVICE int64_t tap_begin(int64_t o) const {
    // k * dilation >= padding - o * stride
    return clamp_index(div_ceil(padding - o * stride, dilation), 0, kernel);
  }
  CORR2D_HOST_DEVICE int64_t tap_end(int64_t o) const {
    // k * dilation <= input - 1 + padding - o * stride
    const int64_t last = div_floor(input - 1 + padding - o * stride, dilation);
    const int64_t end = clamp_index(last + 1, 0, kernel);
    const int64_t begin = tap_begin(o);
    return end < begin ? begin : end;
  }

  // The output index that reads input i through tap k, or -1 when none does (i falls between
  // strided windows, or outside the outputs). The input gradient gathers with this.
  CORR2D_HOST_DEVICE int64_t output_index(int64_t i, int64_t k) const {
    const int64_t n = i + padding - k * dilation;
    if (n < 0 || n % stride != 0) return -1;
    const int64_t o = n / stride;
    return o < output ? o : -1;
  }
};

// The whole problem, in the names of F.conv2d: input (N, C_in, H, W), weight
// (C_out, C_in / groups, kH, kW), output (N, C_out, H_out, W_out). Built only by the one
// argument check in corr2d.cpp, so every field here is already validated.
struct Geometry {
  int64_t batch;
  int64_t in_channels;
  int64_t out_channels;
  int64_t groups;
  Axis rows;
  Axis cols;

  CORR2D_HOST_DEVICE int64_t in_channels_per_group() const { return in_channels / groups; }
  CORR2D_HOST_DEVICE int64_t out_channels_per_group() const { return out_channels / groups; }
  // The group an output channel belongs to, and the first input channel of that group.
  CORR2D_HOST_DEVICE int64_t group_of_output_channel(int64_t oc) const {
    return oc / out_channels_per_group();
  }
  CORR2D_HOST_DEVICE int64_t first_input_channel(int64_t group) const {
    return group * in_channels_per_group();
  }
  CORR2D_HOST_DEVICE int64_t kernel_area() const { return rows.kernel * cols.kernel; }
  CORR2D_HOST_DEVICE int64_t input_plane() const { return rows.input * cols.input; }
  CORR2D_HOST_DEVICE int64_t output_plane() const { return rows.output * cols.output; }
  // Offsets into contiguous NCHW tensors.
  CORR2D_HOST_DEVICE int64_t input_offset(int64_t n, int64_t c) const {
    return (n * in_channels + c) * input_plane();
  }
  CORR2D_HOST_DEVICE int64_t output_offset(int64_t n, int64_t oc) const {
    return (n * out_channels + oc) * output_plane();
  }
  CORR2D_HOST_DEVICE int64_t weight_offset(int64_t oc, int64_t c_in_group) const {
    return (oc * in_channels_per_group() + c_in_group) * kernel_area();
  }
};

}  // namespace corr2d_ext
