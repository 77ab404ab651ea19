// The op family: schemas, the one argument check, the device-generic entry points, the meta
// kernels that torch.compile traces with, and autograd.
//
//   corr2d(input, weight, bias)            -> output
//   corr2d_input_grad(grad_output, weight) -> grad_input
//   corr2d_weight_grad(input, grad_output) -> grad_weight
//
// Autograd, forward-mode AD and the vmap batching rules are in autograd.cpp.
#include <array>
#include <string>

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/SymInt.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>
#include <torch/python.h>

#include "corr2d_ops.h"
#include "cpu/cpu.h"
#include "dispatch.h"

namespace corr2d_ext {

using at::IntArrayRef;
using at::Tensor;

namespace {

// ---------------------------------------------------------------------------------------------
// The one argument check.
//
// Templated on the size type: int64_t for real tensors, c10::SymInt for the meta kernel that
// torch.compile and torch.export trace with. Both run these same lines, so eager calls, opcheck
// and compiled graphs reject the same inputs with the same words.

template <typename T>
c10::ArrayRef<T> sizes_of(const Tensor& t);
template <>
c10::ArrayRef<int64_t> sizes_of<int64_t>(const Tensor& t) {
  return t.sizes();
}
template <>
c10::ArrayRef<c10::SymInt> sizes_of<c10::SymInt>(const Tensor& t) {
  return t.sym_sizes();
}

// Products of these stay far from int64 overflow, and no real image comes near them.
constexpr int64_t kMaxParameter = (int64_t{1} << 31) - 1;

struct Params {
  IntArrayRef stride;
  IntArrayRef padding;
  IntArrayRef dilation;
  int64_t groups;
};

void check_params(const char* op, const Params& p) {
  const std::pair<const char*, IntArrayRef> lists[] = {
      {"stride", p.stride}, {"padding", p.padding}, {"dilation", p.dilation}};
  for (const auto& [name, values] : lists) {
    TORCH_CHECK(values.size() == 2, op, ": expected ", name,
                " to be a single integer value or a list of 2 values to match the convolution "
                "dimensions, but got ",
                name, "=", values);
  }
  TORCH_CHECK(p.groups > 0, op, ": non-positive groups is not supported: expected groups >= 1, "
              "but got groups=", p.groups);
  for (int64_t s : p.stride)
    TORCH_CHECK(s > 0, op, ": non-positive stride is not supported: expected every stride >= 1, "
                "but got stride=", p.stride);
  for (int64_t q : p.padding)
    TORCH_CHECK(q >= 0, op, ": negative padding is not supported: expected every padding >= 0, "
                "but got padding=", p.padding);
  for (int64_t d : p.dilation)
    TORCH_CHECK(d > 0, op, ": non-positive dilation is not supported: expected every dilation "
                ">= 1, but got dilation=", p.dilation);
  for (const auto& [name, values] : lists)
    for (int64_t v : values)
      TORCH_CHECK(v <= kMaxParameter, op, ": expected every ", name, " <= ", kMaxParameter,
                  ", but got ", name, "=", values);
  TORCH_CHECK(p.groups <= kMaxParameter, op, ": expected groups <= ", kMaxParameter,
              ", but got groups=", p.groups);
}

// The tensors' kinds: defined, same device, same floating dtype.
void check_tensors(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  const auto& [first_name, first] = *ts.begin();
  for (const auto& [name, t] : ts) {
    TORCH_CHECK(t->defined(), op, ": expected ", name, " to be a tensor, but got an undefined "
                "tensor");
    TORCH_CHECK(at::isFloatingType(t->scalar_type()), op, ": expected ", name,
                " to be a floating-point tensor (float16, bfloat16, float32 or float64), but got "
                "dtype ", t->scalar_type());
    TORCH_CHECK(t->scalar_type() == first->scalar_type(), op, ": expected ", name,
                " to have the same dtype as ", first_name, " (", first->scalar_type(),
                "), but got ", t->scalar_type());
    TORCH_CHECK(t->device() == first->device(), op, ": expected ", name,
                " to be on the same device as ", first_name, " (", first->device(), "), but got ",
                t->device());
    TORCH_CHECK(t->layout() == at::kStrided, op, ": expected ", name,
                " to be a dense (strided) tensor, but got layout ", t->layout());
  }
}

void check_dim(const char* op, const char* name, const Tensor& t, const char* layout) {
  TORCH_CHECK(t.dim() == 4, op, ": expected ", name, " to be 4-D ", layout, ", but got ", name,
              " of size ", t.sym_sizes());
}

// Checks the geometry of input (N, C, H, W) and weight (O, C / groups, kH, kW) and returns the
// output's sizes (N, O, H_out, W_out).
template <typename T>
std::array<T, 4> check_geometry(const char* op, c10::ArrayRef<T> input, c10::ArrayRef<T> weight,
                                const Params& p) {
  TORCH_CHECK(weight[0] >= 1, op, ": expected weight to have at least 1 output channel "
              "(dimension 0), but got weight of size ", weight);
  TORCH_CHECK(weight[0] % p.groups == 0, op, ": given groups=", p.groups,
              ", expected the weight's output channels (dimension 0) to be divisible by ",
              p.groups, ", but got weight of size ", weight);
  TORCH_CHECK(input[1] == weight[1] * p.groups, op, ": given groups=", p.groups,
              ", weight of size ", weight, ", expected input of size ", input, " to have ",
              weight[1] * p.groups, " channels (weight.size(1) * groups), but got ", input[1],
              " channels instead");
  TORCH_CHECK(input[2] >= 1 && input[3] >= 1, op, ": expected an input of non-zero height and "
              "width (only the batch or the channels may be empty), but got input of size ",
              input);
  TORCH_CHECK(weight[2] >= 1 && weight[3] >= 1, op, ": expected a kernel of at least 1x1, but "
              "got weight of size ", weight);
  // Bounded like stride, padding and dilation, so that the sizes below cannot overflow int64
  // (the gradient ops take input_size and kernel_size as plain numbers).
  TORCH_CHECK(input[2] <= kMaxParameter && input[3] <= kMaxParameter &&
                  weight[2] <= kMaxParameter && weight[3] <= kMaxParameter,
              op, ": expected heights and widths of at most ", kMaxParameter, ", but got input of "
              "size ", input, " and weight of size ", weight);
  std::array<T, 4> out{input[0], weight[0], T(0), T(0)};
  for (int axis = 0; axis < 2; ++axis) {
    const T& in = input[2 + axis];
    const T& k = weight[2 + axis];
    const T padded = in + 2 * p.padding[axis];
    const T extent = (k - 1) * p.dilation[axis] + 1;
    TORCH_CHECK(extent <= padded, op, ": calculated padded input size per channel: (",
                input[2] + 2 * p.padding[0], " x ", input[3] + 2 * p.padding[1],
                "), dilated kernel size: (", (weight[2] - 1) * p.dilation[0] + 1, " x ",
                (weight[3] - 1) * p.dilation[1] + 1,
                "). Expected a kernel no larger than the padded input, but got a larger one "
                "(input of size ", input, ", weight of size ", weight, ", padding=", p.padding,
                ", dilation=", p.dilation, ")");
    out[2 + axis] = output_size<T>(in, k, p.stride[axis], p.padding[axis], p.dilation[axis]);
  }
  return out;
}

template <typename T>
void check_bias(const char* op, const std::optional<Tensor>& bias, c10::ArrayRef<T> weight) {
  if (!bias.has_value()) return;
  const auto b = sizes_of<T>(*bias);
  TORCH_CHECK(b.size() == 1 && b[0] == weight[0], op, ": given weight of size ", weight,
              ", expected bias to be 1-D with ", weight[0], " elements, but got bias of size ", b);
}

template <typename T>
void check_matches(const char* op, const char* name, c10::ArrayRef<T> given,
                   const std::array<T, 4>& expected, const std::string& because) {
  bool same = given.size() == 4;
  for (size_t i = 0; same && i < 4; ++i) same = given[i] == expected[i];
  TORCH_CHECK(same, op, ": expected ", name, " of size ", c10::ArrayRef<T>(expected), " (",
              because, "), but got ", name, " of size ", given);
}

// The check for each op. Each returns the sizes of the op's result.

template <typename T>
std::array<T, 4> check_corr2d(const Tensor& input, const Tensor& weight,
                              const std::optional<Tensor>& bias, const Params& p) {
  const char* op = "corr2d";
  check_params(op, p);
  if (bias.has_value())
    check_tensors(op, {{"input", &input}, {"weight", &weight}, {"bias", &*bias}});
  else
    check_tensors(op, {{"input", &input}, {"weight", &weight}});
  check_dim(op, "input", input, "(N, C, H, W) (conv2d also takes 3-D (C, H, W))");
  check_dim(op, "weight", weight, "(out_channels, in_channels / groups, kH, kW)");
  const auto w = sizes_of<T>(weight);
  check_bias<T>(op, bias, w);
  return check_geometry<T>(op, sizes_of<T>(input), w, p);
}

template <typename T>
std::array<T, 4> check_input_grad(const Tensor& grad_output, const Tensor& weight,
                                  c10::ArrayRef<T> input_size, const Params& p) {
  const char* op = "corr2d_input_grad";
  check_params(op, p);
  check_tensors(op, {{"grad_output", &grad_output}, {"weight", &weight}});
  check_dim(op, "grad_output", grad_output, "(N, out_channels, H_out, W_out)");
  check_dim(op, "weight", weight, "(out_channels, in_channels / groups, kH, kW)");
  TORCH_CHECK(input_size.size() == 2, op, ": expected input_size to be the input's (H, W), "
              "but got input_size=", input_size);
  const auto gy = sizes_of<T>(grad_output);
  const auto w = sizes_of<T>(weight);
  const std::array<T, 4> input{gy[0], w[1] * p.groups, input_size[0], input_size[1]};
  const auto out = check_geometry<T>(op, c10::ArrayRef<T>(input), w, p);
  check_matches<T>(op, "grad_output", gy, out, "the output of the given input_size and weight");
  return input;
}

template <typename T>
std::array<T, 4> check_weight_grad(const Tensor& input, const Tensor& grad_output,
                                   c10::ArrayRef<T> kernel_size, const Params& p) {
  const char* op = "corr2d_weight_grad";
  check_params(op, p);
  check_tensors(op, {{"input", &input}, {"grad_output", &grad_output}});
  check_dim(op, "input", input, "(N, C, H, W)");
  check_dim(op, "grad_output", grad_output, "(N, out_channels, H_out, W_out)");
  TORCH_CHECK(kernel_size.size() == 2, op, ": expected kernel_size to be the weight's (kH, kW), "
              "but got kernel_size=", kernel_size);
  const auto x = sizes_of<T>(input);
  const auto gy = sizes_of<T>(grad_output);
  TORCH_CHECK(x[1] % p.groups == 0, op, ": given groups=", p.groups,
              ", expected the input's channels to be divisible by groups, but got input of size ",
              x);
  const std::array<T, 4> weight{gy[1], x[1] / p.groups, kernel_size[0], kernel_size[1]};
  const auto out = check_geometry<T>(op, x, c10::ArrayRef<T>(weight), p);
  check_matches<T>(op, "grad_output", gy, out, "the output of the given input and kernel_size");
  return weight;
}

// ---------------------------------------------------------------------------------------------
// Memory format of the results.
//
// nn.Conv2d users expect channels_last in, channels_last out. ATen's rule
// (determine_backend_memory_format in aten/src/ATen/native/ConvUtils.h: thnn_ and
// mkldnn_conv_use_channels_last on the CPU, cudnn_conv_suggest_memory_format on CUDA) is:
// channels_last when the input or the weight suggests it, and its gradients follow the same
// pair. We apply it to each op's two tensor arguments, and corr2d's backward restrides its
// gradients to the forward pair's format, so that they come back as F.conv2d's do.
// suggest_memory_format() settles the ambiguous cases (one channel, 1x1 images) as ATen does.
//
// One deviation: cuDNN keeps float64 contiguous on CUDA. A meta kernel under FakeTensor sees
// device "meta", not the real device, so following that would make eager and compiled strides
// differ; float64 channels_last stays channels_last on CUDA too (as on the CPU).

}  // namespace

at::MemoryFormat result_format(const Tensor& a, const Tensor& b) {
  const bool channels_last = a.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                             b.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

namespace {

// Results are allocated with empty(..., format), which gives exactly the strides the meta
// kernel's empty gives (contiguous(format) would keep NCHW strides wherever they also count as
// channels_last: one channel, 1x1 images). A backend that takes channels_last (corr2d_ops.h)
// writes such a result in place and reads its operands in that format; for the others, the
// kernels write contiguous NCHW and the result is a copy.
struct Layout {
  const Corr2dKernels& k;
  at::MemoryFormat format;

  Tensor operand(const Tensor& t) const {
    return k.takes_channels_last ? t.contiguous(format) : t.contiguous();
  }
  // A channels_last weight as it is, where the backend takes channels_last: the copy to OIHW
  // was a twentieth of a 512->512 3x3 forward on 7x7 maps, and packing reads either layout.
  Tensor weight(const Tensor& w) const {
    const bool as_is = k.takes_channels_last && format == at::MemoryFormat::ChannelsLast &&
                       w.is_contiguous(at::MemoryFormat::ChannelsLast);
    return as_is ? w : w.contiguous();
  }
  Tensor result(IntArrayRef sizes, const at::TensorOptions& options) const {
    return at::empty(sizes, options.memory_format(
                                k.takes_channels_last ? format : at::MemoryFormat::Contiguous));
  }
  Tensor returned(const Tensor& r) const {
    if (k.takes_channels_last || format == at::MemoryFormat::Contiguous) return r;
    return at::empty(r.sizes(), r.options().memory_format(format)).copy_(r);
  }
};

// ---------------------------------------------------------------------------------------------
// Device-generic entry points, registered for CPU and CUDA: check, allocate, hand the kernel
// contiguous tensors, return the result in the format of result_format().

Geometry make_geometry(IntArrayRef input, IntArrayRef weight, IntArrayRef output,
                       const Params& p) {
  return Geometry{
      input[0], input[1], weight[0], p.groups,
      Axis{input[2], output[2], weight[2], p.stride[0], p.padding[0], p.dilation[0]},
      Axis{input[3], output[3], weight[3], p.stride[1], p.padding[1], p.dilation[1]}};
}

const Corr2dKernels& kernels_for(const Tensor& t) {
  return t.is_cuda() ? cuda::kernels() : cpu::kernels();
}

Tensor corr2d(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
              IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const Params p{stride, padding, dilation, groups};
  const auto out = check_corr2d<int64_t>(input, weight, bias, p);
  const auto format = result_format(input, weight);
  if (c10::multiply_integers(out) == 0) return at::empty(out, input.options(), format);
  const Layout l{kernels_for(input), format};
  Tensor output = l.result(out, input.options());
  std::optional<Tensor> b;
  if (bias.has_value()) b = bias->contiguous();
  l.k.forward(make_geometry(input.sizes(), weight.sizes(), out, p), l.operand(input),
              l.weight(weight), b, output);
  return l.returned(output);
}

Tensor corr2d_input_grad(const Tensor& grad_output, const Tensor& weight, IntArrayRef input_size,
                         IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
                         int64_t groups) {
  const Params p{stride, padding, dilation, groups};
  const auto in = check_input_grad<int64_t>(grad_output, weight, input_size, p);
  const auto format = result_format(grad_output, weight);
  if (c10::multiply_integers(in) == 0) return at::empty(in, grad_output.options(), format);
  if (grad_output.numel() == 0) return at::empty(in, grad_output.options(), format).zero_();
  const Layout l{kernels_for(grad_output), format};
  Tensor grad_input = l.result(in, grad_output.options());
  l.k.input_grad(make_geometry(in, weight.sizes(), grad_output.sizes(), p),
                 l.operand(grad_output), l.weight(weight), grad_input);
  return l.returned(grad_input);
}

Tensor corr2d_weight_grad(const Tensor& input, const Tensor& grad_output, IntArrayRef kernel_size,
                          IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation,
                          int64_t groups) {
  const Params p{stride, padding, dilation, groups};
  const auto w = check_weight_grad<int64_t>(input, grad_output, kernel_size, p);
  const auto format = result_format(input, grad_output);
  if (c10::multiply_integers(w) == 0) return at::empty(w, input.options(), format);
  // A sum over no terms: no batch, or no output pixels.
  if (grad_output.numel() == 0) return at::empty(w, input.options(), format).zero_();
  const Layout l{kernels_for(input), format};
  Tensor grad_weight = l.result(w, input.options());
  l.k.weight_grad(make_geometry(input.sizes(), w, grad_output.sizes(), p), l.operand(input),
                  l.operand(grad_output), grad_weight);
  return l.returned(grad_weight);
}

// ---------------------------------------------------------------------------------------------
// Meta kernels: the same checks on symbolic sizes, and an empty result. FakeTensor (opcheck,
// torch.compile, torch.export) runs these, so a dynamic-shape graph keeps its sizes symbolic.

Tensor corr2d_meta(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias,
                   IntArrayRef stride, IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const auto out = check_corr2d<c10::SymInt>(input, weight, bias, {stride, padding, dilation, groups});
  return at::empty_symint(out, input.options(), result_format(input, weight));
}

Tensor corr2d_input_grad_meta(const Tensor& grad_output, const Tensor& weight,
                              c10::SymIntArrayRef input_size, IntArrayRef stride,
                              IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const auto in = check_input_grad<c10::SymInt>(grad_output, weight, input_size,
                                                {stride, padding, dilation, groups});
  return at::empty_symint(in, grad_output.options(), result_format(grad_output, weight));
}

Tensor corr2d_weight_grad_meta(const Tensor& input, const Tensor& grad_output,
                               c10::SymIntArrayRef kernel_size, IntArrayRef stride,
                               IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const auto w = check_weight_grad<c10::SymInt>(input, grad_output, kernel_size,
                                                {stride, padding, dilation, groups});
  return at::empty_symint(w, input.options(), result_format(input, grad_output));
}

// ---------------------------------------------------------------------------------------------
// The ops through the dispatcher, for the autocast kernels below and for autograd.cpp (autograd,
// forward-mode AD and the vmap batching rules).

}  // namespace

const c10::TypedOperatorHandle<Corr2dSig>& corr2d_op() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("corr2d_ext::corr2d", "")
                            .typed<Corr2dSig>();
  return h;
}
const c10::TypedOperatorHandle<InputGradSig>& input_grad_op() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("corr2d_ext::corr2d_input_grad", "")
                            .typed<InputGradSig>();
  return h;
}
const c10::TypedOperatorHandle<WeightGradSig>& weight_grad_op() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("corr2d_ext::corr2d_weight_grad", "")
                            .typed<WeightGradSig>();
  return h;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Autocast. ATen lists conv2d as a lower-precision op: under torch.autocast it casts the floating
// tensors of the autocast device to the autocast dtype (float16 or bfloat16, whichever the
// context asks for; float64 is left alone) and runs below autocast. corr2d does the same, so a
// model runs in the same precision with either convolution. (torch.library.register_autocast
// would fix one dtype at registration; this follows the context's.) Its backward needs no rule:
// autograd records the casts, and the gradient ops get tensors of one dtype.

template <c10::DeviceType device_type>
Tensor corr2d_autocast(const Tensor& input, const Tensor& weight,
                       const std::optional<Tensor>& bias, IntArrayRef stride, IntArrayRef padding,
                       IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(
      at::autocast::get_autocast_dispatch_key_from_device_type(device_type));
  const auto dtype = at::autocast::get_lower_precision_fp_from_device_type(device_type);
  return corr2d_op().call(at::autocast::cached_cast(dtype, input, device_type),
                          at::autocast::cached_cast(dtype, weight, device_type),
                          at::autocast::cached_cast(dtype, bias, device_type), stride, padding,
                          dilation, groups);
}

}  // namespace

#ifndef CORR2D_WITH_CUDA
// A CPU-only build still answers CUDA tensors, with how to get the kernels instead of the
// dispatcher's "could not run ... with arguments from the 'CUDA' backend".
namespace cuda {
bool built() { return false; }
const Corr2dKernels& kernels() {
  TORCH_CHECK(false,
              "corr2d_ext was built without its CUDA kernels, so it cannot run on CUDA tensors. "
              "Rebuild it with a CUDA toolkit and a CUDA build of torch, forcing the CUDA "
              "sources on: CORR2D_CUDA=1 pip install --no-build-isolation -e .");
}
}  // namespace cuda
#endif

TORCH_LIBRARY(corr2d_ext, m) {
  m.def("corr2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups) -> Tensor");
  m.def("corr2d_input_grad(Tensor grad_output, Tensor weight, SymInt[2] input_size, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def("corr2d_weight_grad(Tensor input, Tensor grad_output, SymInt[2] kernel_size, "
        "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
}

// The same entry points serve both devices; kernels_for() picks the kernels.
TORCH_LIBRARY_IMPL(corr2d_ext, CPU, m) {
  m.impl("corr2d", &corr2d);
  m.impl("corr2d_input_grad", &corr2d_input_grad);
  m.impl("corr2d_weight_grad", &corr2d_weight_grad);
}

TORCH_LIBRARY_IMPL(corr2d_ext, CUDA, m) {
  m.impl("corr2d", &corr2d);
  m.impl("corr2d_input_grad", &corr2d_input_grad);
  m.impl("corr2d_weight_grad", &corr2d_weight_grad);
}

TORCH_LIBRARY_IMPL(corr2d_ext, Meta, m) {
  m.impl("corr2d", &corr2d_meta);
  m.impl("corr2d_input_grad", &corr2d_input_grad_meta);
  m.impl("corr2d_weight_grad", &corr2d_weight_grad_meta);
}

TORCH_LIBRARY_IMPL(corr2d_ext, AutocastCPU, m) {
  m.impl("corr2d", &corr2d_autocast<c10::DeviceType::CPU>);
}

TORCH_LIBRARY_IMPL(corr2d_ext, AutocastCUDA, m) {
  m.impl("corr2d", &corr2d_autocast<c10::DeviceType::CUDA>);
}

}  // namespace corr2d_ext

// ---------------------------------------------------------------------------------------------
// The Python module: build facts, and the shared index helpers exposed so that the CPU tests
// can hold them against brute force (the CUDA kernels use the same helpers).

namespace {

pybind11::dict axis_table(int64_t input, int64_t kernel, int64_t stride, int64_t padding,
                          int64_t dilation) {
  using corr2d_ext::Axis;
  TORCH_CHECK(input >= 0 && kernel >= 1 && stride >= 1 && padding >= 0 && dilation >= 1 &&
                  (kernel - 1) * dilation + 1 <= input + 2 * padding,
              "axis_table: invalid axis (input=", input, ", kernel=", kernel, ", stride=", stride,
              ", padding=", padding, ", dilation=", dilation, ")");
  const int64_t output = corr2d_ext::output_size<int64_t>(input, kernel, stride, padding, dilation);
  const Axis a{input, output, kernel, stride, padding, dilation};
  std::vector<std::pair<int64_t, int64_t>> outputs_of_tap, taps_of_output;
  std::vector<std::vector<int64_t>> output_index(input, std::vector<int64_t>(kernel));
  for (int64_t k = 0; k < kernel; ++k) outputs_of_tap.emplace_back(a.output_begin(k), a.output_end(k));
  for (int64_t o = 0; o < output; ++o) taps_of_output.emplace_back(a.tap_begin(o), a.tap_end(o));
  for (int64_t i = 0; i < input; ++i)
    for (int64_t k = 0; k < kernel; ++k) output_index[i][k] = a.output_index(i, k);
  pybind11::dict d;
  d["output"] = output;
  d["outputs_of_tap"] = outputs_of_tap;
  d["taps_of_output"] = taps_of_output;
  d["output_index"] = output_index;
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "corr2d_ext's compiled ops; the ops themselves are torch.ops.corr2d_ext.*";
  m.attr("cuda_built") = corr2d_ext::cuda::built();
  m.def("axis_table", &axis_table,
        "The shared index helpers of one axis, tabulated, for the tests.");
  m.def("cpu_isas", &corr2d_ext::cpu::available_isas,
        "The CPU kernel sets this machine can run, best first: the fast-path instantiations "
        "(native ones, then the generic ones that mimic another ISA's width), then 'portable'.");
  m.def("cpu_isa", &corr2d_ext::cpu::selected_isa, "The CPU kernel set calls run now.");
  m.def("set_cpu_isa", &corr2d_ext::cpu::select_isa, pybind11::arg("name"),
        "Test and benchmark hook: run every CPU call on one kernel set ('auto' for the default).");
  m.def("cpu_fast_path_min_macs", &corr2d_ext::cpu::fast_path_min_macs,
        "Problems with fewer multiply-adds take the portable CPU kernels.");
}
