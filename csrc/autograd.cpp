// Autograd, forward-mode AD and vmap batching rules of the three ops.
//
// Each op is bilinear in its two tensor arguments, so both its derivatives are made of the ops
// themselves. With y = corr2d(x, w) + b, gx = input_grad(gy, w), gw = weight_grad(x, gy):
//
//   reverse (vector-Jacobian)                    forward (Jacobian-vector, tangents t*)
//   corr2d      dx = input_grad(gy, w)            ty  = corr2d(tx, w) + corr2d(x, tw) + tb
//               dw = weight_grad(x, gy)
//               db = sum of gy over (N, H, W)
//   input_grad  d(gy) = corr2d(ggx, w)            tgx = input_grad(tgy, w) + input_grad(gy, tw)
//               dw    = weight_grad(ggx, gy)
//   weight_grad dx    = input_grad(gy, ggw)       tgw = weight_grad(tx, gy) + weight_grad(x, tgy)
//               d(gy) = corr2d(x, ggw)
//
// Every derivative calls the ops through the dispatcher, so it is differentiable again, in
// either mode: double backward, forward-over-reverse (Hessian-vector products) and every higher
// order need no further kernel.
//
// Why a hand-written autograd::Node rather than torch::autograd::Function: functorch refuses a
// C++ autograd::Function under its transforms (grad, vjp, jacrev, vmap of grad), while kernels
// at the Autograd key written the way PyTorch's generated VariableType code is written (a Node
// subclass, collect_next_edges, set_history, SavedVariable, and the forward gradient set on the
// result with _set_fw_grad) are ordinary kernels to it: functorch's grad and jvp wrap and
// unwrap the tensors around them level by level, as for any built-in op. It is also cheaper in
// eager mode than autograd::Function (no AutogradContext, no saved_data dictionary).
//
// vmap: the batching rules below, at the FuncTorchBatched key, fold the vmapped dimension into
// the batch (a batch of inputs) or into the groups (a batch of weights, or of both), so a vmapped
// call is one call of our kernels rather than the per-sample fallback.
#include <algorithm>
#include <array>

#include <ATen/functorch/BatchedTensorImpl.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/dynamo/compiled_autograd.h>
#include <torch/library.h>

#include "dispatch.h"

namespace corr2d_ext {

using at::IntArrayRef;
using at::Tensor;
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

namespace {

// stride, padding, dilation, groups. Copied only after the op has run its argument check,
// which guarantees two values each.
struct Params {
  std::array<int64_t, 2> stride, padding, dilation;
  int64_t groups;

  Params(IntArrayRef s, IntArrayRef p, IntArrayRef d, int64_t g)
      : stride{s[0], s[1]}, padding{p[0], p[1]}, dilation{d[0], d[1]}, groups(g) {}
};

c10::SymIntArrayRef spatial_sizes(const Tensor& t) { return t.sym_sizes().slice(2, 2); }

Tensor corr2d_call(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b,
                   const Params& p) {
  return corr2d_op().call(x, w, b, p.stride, p.padding, p.dilation, p.groups);
}
Tensor input_grad_call(const Tensor& gy, const Tensor& w, c10::SymIntArrayRef input_size,
                       const Params& p) {
  return input_grad_op().call(gy, w, input_size, p.stride, p.padding, p.dilation, p.groups);
}
Tensor weight_grad_call(const Tensor& x, const Tensor& gy, c10::SymIntArrayRef kernel_size,
                        const Params& p) {
  return weight_grad_op().call(x, gy, kernel_size, p.stride, p.padding, p.dilation, p.groups);
}

// ---------------------------------------------------------------------------------------------
// Reverse mode: one Node per op, holding the two tensor arguments (each op's derivative needs
// both) and the geometry.

// The backward of each op, given its two saved tensors and which gradients are wanted. The Nodes
// call these, and so does compiled autograd's functional form of the Nodes (below).
using Wanted = std::array<bool, 3>;

variable_list corr2d_backward(const Tensor& gy, const Tensor& input, const Tensor& weight,
                              const Params& p, Wanted wanted) {
  variable_list out(3);
  // F.conv2d's gradients take the format of its (input, weight) pair, whatever gy's.
  const auto format = result_format(input, weight);
  if (wanted[0]) out[0] = input_grad_call(gy, weight, spatial_sizes(input), p).contiguous(format);
  if (wanted[1])
    out[1] = weight_grad_call(input, gy, spatial_sizes(weight), p).contiguous(format);
  if (wanted[2]) out[2] = gy.sum({0, 2, 3});
  return out;
}

variable_list input_grad_backward(const Tensor& ggx, const Tensor& grad_output,
                                  const Tensor& weight, const Params& p, Wanted wanted) {
  variable_list out(2);
  if (wanted[0]) out[0] = corr2d_call(ggx, weight, std::nullopt, p);
  if (wanted[1]) out[1] = weight_grad_call(ggx, grad_output, spatial_sizes(weight), p);
  return out;
}

variable_list weight_grad_backward(const Tensor& ggw, const Tensor& input,
                                   const Tensor& grad_output, const Params& p, Wanted wanted) {
  variable_list out(2);
  if (wanted[0]) out[0] = input_grad_call(grad_output, ggw, spatial_sizes(input), p);
  if (wanted[1]) out[1] = corr2d_call(input, ggw, std::nullopt, p);
  return out;
}

using BackwardFn = variable_list (*)(const Tensor&, const Tensor&, const Tensor&, const Params&,
                                     Wanted);

// One Node type per op: the two saved tensors and the geometry.
//
// Compiled autograd (torch._dynamo.compiled_autograd) caches a traced backward per graph
// structure: compiled_args() names what the node's backward depends on; apply_with_saved() puts
// the backward in the traced graph as a call of the functional form below, which the tracer
// traces through to the three ops (as for PyTorch's own nodes).
template <BackwardFn backward, int num_edges>
struct BilinearBackward final : Node {
  using ivalue_list = std::vector<c10::IValue>;
  SavedVariable a_, b_;
  Params p;
  const char* name_;

  BilinearBackward(const Params& params, const char* name) : p(params), name_(name) {}
  std::string name() const override { return name_; }
  void release_variables() override {
    a_.reset_data();
    b_.reset_data();
  }

  Wanted wanted() const {
    Wanted w{false, false, false};
    for (int i = 0; i < num_edges; ++i) w[i] = task_should_compute_output(i);
    return w;
  }

  variable_list apply(variable_list&& grads) override {
    if (!grads[0].defined()) return variable_list(num_edges);
    return backward(grads[0], a_.unpack(), b_.unpack(), p, wanted());
  }

  void compiled_args(torch::dynamo::autograd::CompiledNodeArgs& args) const override {
    args.collect(std::string(name_));
    args.collect(a_, /*is_output=*/false);
    args.collect(b_, /*is_output=*/false);
    for (const auto* values : {&p.stride, &p.padding, &p.dilation})
      for (int64_t v : *values) args.collect(v);
    args.collect(p.groups);
  }

  // The backward as a function of the gradient and packed arguments, for compiled autograd.
  static variable_list functional(const variable_list& grads, const ivalue_list& packed) {
    torch::dynamo::autograd::PackedArgs args(packed);
    const auto a = args.unpack<at::Tensor>();
    const auto b = args.unpack<at::Tensor>();
    const auto stride = args.unpack<std::vector<int64_t>>();
    const auto padding = args.unpack<std::vector<int64_t>>();
    const auto dilation = args.unpack<std::vector<int64_t>>();
    const auto groups = args.unpack<int64_t>();
    const auto wanted = args.unpack<Wanted>();
    if (!grads[0].defined()) return variable_list(num_edges);
    return backward(grads[0], a, b, Params(stride, padding, dilation, groups), wanted);
  }

  variable_list apply_with_saved(const variable_list& grads,
                                 torch::dynamo::autograd::SwapSavedVariables& saved) override {
    saved.before(a_);
    saved.before(b_);
    torch::dynamo::autograd::PackedArgs args;
    args.pack(a_.unpack());
    args.pack(b_.unpack());
    args.pack(std::vector<int64_t>(p.stride.begin(), p.stride.end()));
    args.pack(std::vector<int64_t>(p.padding.begin(), p.padding.end()));
    args.pack(std::vector<int64_t>(p.dilation.begin(), p.dilation.end()));
    args.pack(p.groups);
    args.pack(wanted());
    const auto packed = std::move(args).vec();
    std::vector<at::TypePtr> schema;
    for (const auto& v : packed)
      schema.emplace_back(v.isTensor() ? at::TensorType::get() : v.type());
    const auto& py = torch::dynamo::autograd::getPyCompilerInterface();
    // Bound once per process under the node's name (a second binding of a name is an error);
    // the packed arguments' types are the same for every node of the type.
    static const std::string fn = py->bind_function(saved.get_py_compiler(), name_, &functional,
                                                    schema, /*is_custom_function=*/false,
                                                    /*is_traceable=*/true);
    const auto metadata = torch::dynamo::autograd::IValuePacker<
        std::vector<std::optional<torch::autograd::InputMetadata>>>::
        pack(torch::dynamo::autograd::get_input_metadata(next_edges()));
    auto results =
        py->call_function(saved.get_py_compiler(), "apply_functional", fn, grads, packed,
                          metadata);
    saved.after(a_);
    saved.after(b_);
    return results;
  }
};

// y = corr2d(x, w) + b: saves (input, weight); edges to input, weight, bias.
using Corr2dBackward = BilinearBackward<corr2d_backward, 3>;
// gx = input_grad(gy, w): saves (grad_output, weight).
using InputGradBackward = BilinearBackward<input_grad_backward, 2>;
// gw = weight_grad(x, gy): saves (input, grad_output).
using WeightGradBackward = BilinearBackward<weight_grad_backward, 2>;

// ---------------------------------------------------------------------------------------------
// The Autograd-key kernels. With nothing to differentiate (grad mode off or nothing requiring
// grad, and no forward tangent), they cost one check and the call below autograd: a node and
// its saved variables cost microseconds, as much as the whole correlation of a small image.

bool requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

// Forward mode: the tangent at level 0 (functorch's jvp gives each of its levels its own
// wrapper, each with its own level 0, as for built-in ops).
bool has_tangent(const Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }
bool any_tangent(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (has_tangent(*t)) return true;
  return false;
}
// The tangent formulas take primals: a dual argument there would give the tangent a tangent of
// its own at the same level.
Tensor primal(const Tensor& t) { return has_tangent(t) ? t._fw_primal(/*level=*/0) : t; }
const Tensor& tangent(const Tensor& t) {
  static const Tensor undefined;
  return t.defined() ? t._fw_grad(/*level=*/0) : undefined;
}
// a + b where either may be undefined (no tangent).
Tensor add_defined(Tensor a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a.add(b);
}

Tensor corr2d_autograd(const Tensor& input, const Tensor& weight,
                       const std::optional<Tensor>& bias, IntArrayRef stride, IntArrayRef padding,
                       IntArrayRef dilation, int64_t groups) {
  static const Tensor undefined;
  const Tensor& b = bias.has_value() ? *bias : undefined;
  const bool graph = requires_grad({&input, &weight, &b});
  const bool forward_ad = any_tangent({&input, &weight, &b});
  Tensor output;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    output = corr2d_op().call(input, weight, bias, stride, padding, dilation, groups);
  }
  if (!graph && !forward_ad) return output;
  const Params p(stride, padding, dilation, groups);
  if (graph) {
    auto node = c10::make_intrusive<Corr2dBackward>(p, "Corr2dBackward");
    node->set_next_edges(torch::autograd::collect_next_edges(input, weight, b));
    node->a_ = SavedVariable(input, /*is_output=*/false);
    node->b_ = SavedVariable(weight, /*is_output=*/false);
    torch::autograd::set_history(output, node);
  }
  if (forward_ad) {
    const Tensor &tx = tangent(input), &tw = tangent(weight), &tb = tangent(b);
    Tensor t;
    if (tx.defined()) t = corr2d_call(tx, primal(weight), std::nullopt, p);
    if (tw.defined()) t = add_defined(t, corr2d_call(primal(input), tw, std::nullopt, p));
    if (tb.defined()) {
      const Tensor tb4 = tb.reshape({1, -1, 1, 1});
      // Alone, the bias tangent is broadcast to a full tensor: a tangent has its primal's size.
      t = t.defined() ? t.add(tb4)
                      : tb4.expand_as(output).contiguous(output.suggest_memory_format());
    }
    output._set_fw_grad(t, /*level=*/0, /*is_inplace_op=*/false);
  }
  return output;
}

Tensor input_grad_autograd(const Tensor& grad_output, const Tensor& weight,
                           c10::SymIntArrayRef input_size, IntArrayRef stride,
                           IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const bool graph = requires_grad({&grad_output, &weight});
  const bool forward_ad = any_tangent({&grad_output, &weight});
  Tensor grad_input;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    grad_input = input_grad_op().call(grad_output, weight, input_size, stride, padding, dilation,
                                      groups);
  }
  if (!graph && !forward_ad) return grad_input;
  const Params p(stride, padding, dilation, groups);
  if (graph) {
    auto node =
        c10::make_intrusive<InputGradBackward>(p, "Corr2dInputGradBackward");
    node->set_next_edges(torch::autograd::collect_next_edges(grad_output, weight));
    node->a_ = SavedVariable(grad_output, /*is_output=*/false);
    node->b_ = SavedVariable(weight, /*is_output=*/false);
    torch::autograd::set_history(grad_input, node);
  }
  if (forward_ad) {
    const Tensor &tgy = tangent(grad_output), &tw = tangent(weight);
    Tensor t;
    if (tgy.defined()) t = input_grad_call(tgy, primal(weight), input_size, p);
    if (tw.defined()) t = add_defined(t, input_grad_call(primal(grad_output), tw, input_size, p));
    grad_input._set_fw_grad(t, /*level=*/0, /*is_inplace_op=*/false);
  }
  return grad_input;
}

Tensor weight_grad_autograd(const Tensor& input, const Tensor& grad_output,
                            c10::SymIntArrayRef kernel_size, IntArrayRef stride,
                            IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  const bool graph = requires_grad({&input, &grad_output});
  const bool forward_ad = any_tangent({&input, &grad_output});
  Tensor grad_weight;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    grad_weight = weight_grad_op().call(input, grad_output, kernel_size, stride, padding,
                                        dilation, groups);
  }
  if (!graph && !forward_ad) return grad_weight;
  const Params p(stride, padding, dilation, groups);
  if (graph) {
    auto node =
        c10::make_intrusive<WeightGradBackward>(p, "Corr2dWeightGradBackward");
    node->set_next_edges(torch::autograd::collect_next_edges(input, grad_output));
    node->a_ = SavedVariable(input, /*is_output=*/false);
    node->b_ = SavedVariable(grad_output, /*is_output=*/false);
    torch::autograd::set_history(grad_weight, node);
  }
  if (forward_ad) {
    const Tensor &tx = tangent(input), &tgy = tangent(grad_output);
    Tensor t;
    if (tx.defined()) t = weight_grad_call(tx, primal(grad_output), kernel_size, p);
    if (tgy.defined()) t = add_defined(t, weight_grad_call(primal(input), tgy, kernel_size, p));
    grad_weight._set_fw_grad(t, /*level=*/0, /*is_inplace_op=*/false);
  }
  return grad_weight;
}

// ---------------------------------------------------------------------------------------------
// vmap batching rules (FuncTorchBatched key). The vmapped dimension (size B) of the tensors
// batched at the current level is moved to the front and folded:
//
//   only the input batched      into N:       (B, N, C, H, W) -> (B*N, C, H, W)
//   the weight batched          into groups:  weight (B, O, C/g, kH, kW) -> (B*O, C/g, kH, kW),
//     (the input too, or not)                 input (N, B*C, H, W) (copied B times if not
//                                             batched), groups B*g; output (N, B*O, ...)
//   weight_grad, anything       into groups:  its sum over N must stay per sample
//
// so that one call of our kernels computes the whole batch. Each rule first runs the op on the
// per-sample shapes as meta tensors (no memory, no arithmetic): its argument check then names
// the shapes the user wrote, not the folded ones, and its result gives the per-sample sizes
// to unfold into (a -1 could not be inferred for an empty result).

using at::functorch::makeBatched;
using at::functorch::maybeGetBatchedImpl;

struct Unwrapped {
  Tensor value;
  std::optional<int64_t> bdim;
};

// The level of the vmap being computed. A batching rule runs only while the innermost
// functorch layer is a vmap, and no tensor can be batched at a level deeper than that; so the
// deepest level among the arguments is the current one whenever an argument is batched there.
// When none is (the arguments are batched only by an outer vmap), treating the deepest as
// current computes what the inner vmap's plain call followed by the outer vmap's rule would.
// (functorch's own maybeCurrentDynamicLayer() is declared in a header that needs nlohmann/json,
// which torch's wheels do not ship.)
int64_t current_level(std::initializer_list<const Tensor*> ts) {
  int64_t level = -1;
  for (const Tensor* t : ts)
    if (t->defined())
      if (const auto* impl = maybeGetBatchedImpl(*t)) level = std::max(level, impl->level());
  return level;
}

Unwrapped unwrap(const Tensor& t, int64_t level) {
  const auto* impl = maybeGetBatchedImpl(t);
  if (impl == nullptr || impl->level() != level) return {t, std::nullopt};
  return {impl->value(), impl->bdim()};
}

// The per-sample (logical) tensor as a meta tensor: what the user's function sees.
Tensor logical_meta(const Unwrapped& u) {
  auto sizes = u.value.sym_sizes().vec();
  if (u.bdim) sizes.erase(sizes.begin() + *u.bdim);
  return at::empty_symint(sizes, u.value.options().device(at::kMeta));
}

int64_t batch_size(std::initializer_list<const Unwrapped*> us) {
  for (const Unwrapped* u : us)
    if (u->bdim) return u->value.size(*u->bdim);
  return 0;
}

// The inverse of a fold: dimension dim of size B*S as (B, S), S read from the per-sample result.
Tensor unfold(const Tensor& t, int64_t dim, int64_t B, const Tensor& per_sample) {
  return t.unflatten_symint(dim, {c10::SymInt(B), per_sample.sym_size(dim)});
}

// (N, B*C, ...) from an unwrapped 4-D-per-sample tensor: its batch moved next to the channels
// and merged with them; an unbatched one is repeated B times.
Tensor fold_into_channels(const Unwrapped& u, int64_t B) {
  if (u.bdim) return u.value.movedim(*u.bdim, 1).flatten(1, 2);
  const auto& t = u.value;
  return t.unsqueeze(1).expand({t.size(0), B, t.size(1), t.size(2), t.size(3)}).flatten(1, 2);
}
// (B*O, ...) from a batched weight-like tensor (the vmapped dimension first).
Tensor fold_into_first(const Unwrapped& u) { return u.value.movedim(*u.bdim, 0).flatten(0, 1); }

Tensor corr2d_batched(const Tensor& input, const Tensor& weight,
                      const std::optional<Tensor>& bias, IntArrayRef stride, IntArrayRef padding,
                      IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard guard(c10::DispatchKey::FuncTorchBatched);
  const int64_t level = current_level({&input, &weight, bias ? &*bias : &input});
  const Unwrapped x = unwrap(input, level), w = unwrap(weight, level);
  std::optional<Unwrapped> b;
  if (bias.has_value()) b = unwrap(*bias, level);
  const bool b_batched = b.has_value() && b->bdim.has_value();
  if (!x.bdim && !w.bdim && !b_batched)
    return corr2d_op().call(x.value, w.value, b ? std::optional<Tensor>(b->value) : std::nullopt,
                            stride, padding, dilation, groups);
  const Tensor per_sample = corr2d_op().call(
      logical_meta(x), logical_meta(w), b ? std::optional<Tensor>(logical_meta(*b)) : std::nullopt,
      stride, padding, dilation, groups);
  const int64_t B = batch_size({&x, &w, b ? &*b : &x});
  if (w.bdim) {
    std::optional<Tensor> folded_bias;
    if (b_batched)
      folded_bias = fold_into_first(*b);
    else if (b)
      folded_bias = b->value.repeat({B});
    const Tensor y = corr2d_op().call(fold_into_channels(x, B), fold_into_first(w), folded_bias,
                                      stride, padding, dilation, groups * B);
    return makeBatched(unfold(y, 1, B, per_sample), 1, level);
  }
  // The weight is shared: the input's batch folds into N, and a batched bias is added after.
  const std::optional<Tensor> shared_bias =
      b && !b_batched ? std::optional<Tensor>(b->value) : std::nullopt;
  Tensor y;
  if (x.bdim)
    y = unfold(corr2d_op().call(x.value.movedim(*x.bdim, 0).flatten(0, 1), w.value, shared_bias,
                                stride, padding, dilation, groups),
               0, B, per_sample);
  else
    y = corr2d_op().call(x.value, w.value, shared_bias, stride, padding, dilation, groups)
            .unsqueeze(0);
  if (b_batched) y = y.add(b->value.movedim(*b->bdim, 0).reshape({B, 1, -1, 1, 1}));
  return makeBatched(y, 0, level);
}

Tensor input_grad_batched(const Tensor& grad_output, const Tensor& weight,
                          c10::SymIntArrayRef input_size, IntArrayRef stride,
                          IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard guard(c10::DispatchKey::FuncTorchBatched);
  const int64_t level = current_level({&grad_output, &weight});
  const Unwrapped gy = unwrap(grad_output, level), w = unwrap(weight, level);
  if (!gy.bdim && !w.bdim)
    return input_grad_op().call(gy.value, w.value, input_size, stride, padding, dilation, groups);
  const Tensor per_sample = input_grad_op().call(logical_meta(gy), logical_meta(w), input_size,
                                                 stride, padding, dilation, groups);
  const int64_t B = batch_size({&gy, &w});
  if (w.bdim) {
    const Tensor gx = input_grad_op().call(fold_into_channels(gy, B), fold_into_first(w),
                                           input_size, stride, padding, dilation, groups * B);
    return makeBatched(unfold(gx, 1, B, per_sample), 1, level);
  }
  const Tensor gx = input_grad_op().call(gy.value.movedim(*gy.bdim, 0).flatten(0, 1), w.value,
                                         input_size, stride, padding, dilation, groups);
  return makeBatched(unfold(gx, 0, B, per_sample), 0, level);
}

Tensor weight_grad_batched(const Tensor& input, const Tensor& grad_output,
                           c10::SymIntArrayRef kernel_size, IntArrayRef stride,
                           IntArrayRef padding, IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard guard(c10::DispatchKey::FuncTorchBatched);
  const int64_t level = current_level({&input, &grad_output});
  const Unwrapped x = unwrap(input, level), gy = unwrap(grad_output, level);
  if (!x.bdim && !gy.bdim)
    return weight_grad_op().call(x.value, gy.value, kernel_size, stride, padding, dilation,
                                 groups);
  const Tensor per_sample = weight_grad_op().call(logical_meta(x), logical_meta(gy), kernel_size,
                                                  stride, padding, dilation, groups);
  const int64_t B = batch_size({&x, &gy});
  const Tensor gw = weight_grad_op().call(fold_into_channels(x, B), fold_into_channels(gy, B),
                                          kernel_size, stride, padding, dilation, groups * B);
  return makeBatched(unfold(gw, 0, B, per_sample), 0, level);
}

// ---------------------------------------------------------------------------------------------
// The tutorial's call, corr2d(X, K) on one 2-D image and one 2-D kernel: views to (1, 1, H, W)
// and back around corr2d. Composite (CompositeImplicitAutograd), so autograd, functorch,
// torch.compile and export see corr2d itself. It exists because on a 6x8 image the views and
// the list arguments, made in Python, cost as much as the correlation: here they are a few
// hundred nanoseconds. corr2d_ext.corr2d checks the arguments first, with its own messages.

Tensor corr2d_2d(const Tensor& X, const Tensor& K) {
  TORCH_CHECK(X.dim() == 2 && K.dim() == 2, "corr2d_2d: expected a 2-D image and a 2-D kernel, "
              "but got X of size ", X.sym_sizes(), " and K of size ", K.sym_sizes());
  static const std::array<int64_t, 2> ones{1, 1}, zeros{0, 0};
  const auto x = X.sym_sizes(), k = K.sym_sizes();
  const Tensor Y = corr2d_op().call(X.view_symint({1, 1, x[0], x[1]}),
                                    K.view_symint({1, 1, k[0], k[1]}), std::nullopt, ones, zeros,
                                    ones, 1);
  const auto y = Y.sym_sizes();
  return Y.view_symint({y[2], y[3]});
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(corr2d_ext, m) {
  m.def("corr2d_2d(Tensor X, Tensor K) -> Tensor");
}

TORCH_LIBRARY_IMPL(corr2d_ext, CompositeImplicitAutograd, m) {
  m.impl("corr2d_2d", &corr2d_2d);
}

TORCH_LIBRARY_IMPL(corr2d_ext, Autograd, m) {
  m.impl("corr2d", &corr2d_autograd);
  m.impl("corr2d_input_grad", &input_grad_autograd);
  m.impl("corr2d_weight_grad", &weight_grad_autograd);
}

TORCH_LIBRARY_IMPL(corr2d_ext, FuncTorchBatched, m) {
  // vmap does not decompose composite ops by itself (functorch lists its own decompositions):
  // running the composite here, on the batched tensors, sends its views and corr2d to their
  // batching rules.
  m.impl("corr2d_2d", &corr2d_2d);
  m.impl("corr2d", &corr2d_batched);
  m.impl("corr2d_input_grad", &input_grad_batched);
  m.impl("corr2d_weight_grad", &weight_grad_batched);
}

}  // namespace corr2d_ext
