// The CPU kernel table: which kernels run each call. One place for every rule that decides it:
// the instantiation (chosen once from the CPU's features, or by the test hook), the problems
// too small for the fast path's setup, and the cases only the portable kernels cover.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "../corr2d_ops.h"
#include "cpu.h"
#include "plan.h"

namespace corr2d_ext {
namespace cpu {
namespace {

// Every instantiation of this build, best first: the default is the first native one the CPU
// supports.
std::vector<const IsaKernels*> instantiations() {
  std::vector<const IsaKernels*> all;
#if defined(__x86_64__) || defined(_M_X64)
  all.push_back(&isa::avx512());
  all.push_back(&isa::avx2());
#endif
#if defined(__aarch64__)
  all.push_back(&isa::neon());
#endif
  all.push_back(&isa::generic16());
  all.push_back(&isa::generic8());
  all.push_back(&isa::generic4());
  return all;
}

const IsaKernels* best_native() {
  for (const IsaKernels* k : instantiations())
    if (k->native && k->supported()) return k;
  return nullptr;  // e.g. x86-64 without AVX2: the portable kernels
}

// nullptr: the portable kernels.
const IsaKernels* find(const std::string& name) {
  if (name == "auto") return best_native();
  if (name == "portable") return nullptr;
  for (const IsaKernels* k : instantiations())
    if (name == k->name) {
      TORCH_CHECK(k->supported(), "corr2d_ext: this CPU cannot run the '", name,
                  "' kernels; expected one of ", c10::Join(", ", available_isas()));
      return k;
    }
  TORCH_CHECK(false, "corr2d_ext: unknown CPU kernel set '", name, "'; expected one of ",
              c10::Join(", ", available_isas()), " or auto");
}

std::atomic<const IsaKernels*>& selected() {
  // CORR2D_CPU_ISA lets a benchmark or a user pin the kernels without code.
  static std::atomic<const IsaKernels*> s{[] {
    const char* env = std::getenv("CORR2D_CPU_ISA");
    return env && *env ? find(env) : best_native();
  }()};
  return s;
}

// Below this many multiply-adds the fast path's setup (staging buffers, slot tables) costs
// more than the sum itself: the tutorial's 6x8 image has 84.
constexpr int64_t kMinFastMacs = 1 << 12;

int64_t multiply_adds(const Geometry& g) {
  return g.batch * g.out_channels * g.output_plane() * g.in_channels_per_group() * g.kernel_area();
}

const IsaKernels* fast_path_for(const Geometry& g) {
  if (g.in_channels == 0 || multiply_adds(g) < kMinFastMacs) return nullptr;
  return selected().load();
}

// The kernels' scalar for `t`'s dtype (float accumulates bfloat16 and float16): its size, and
// the lanes of one of k's vectors.
int64_t scalar_bytes(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? 8 : 4; }
int lanes_for(const IsaKernels* k, const at::Tensor& t) {
  return scalar_bytes(t) == 8 ? k->float_lanes / 2 : k->float_lanes;
}

// Layouts. corr2d.cpp hands these kernels every tensor contiguous in the call's result format
// (corr2d_ops.h): NCHW, or NHWC where the result is channels_last, the weight OIHW or (a
// channels_last call's channels_last weight) OHWI. The channels-last kernels read the weight
// through its strides; the NCHW ones get it OIHW. A tensor with one channel or 1x1 images is
// both, and reads the same either way.
//
// Whether the channels-last kernels suit a correlation (`g`: its forward form, the input
// gradient's phases), `packed_taps` the taps per weight they pack once per call (the forward's
// and input gradient's, within a bound; 0 for the weight gradient, which packs nothing).
bool suits_channels_last(const IsaKernels* k, const Geometry& g, const at::Tensor& src,
                         int64_t packed_taps) {
  return k && channels_last_fits(g, k->float_lanes) &&
         (packed_taps == 0 ||
          channels_last_packs_within_bound(g, packed_taps, k->float_lanes, scalar_bytes(src)));
}

// Whether a call takes them as it is: its src and dst NHWC (not both NCHW).
bool takes_channels_last(const IsaKernels* k, const Geometry& g, const at::Tensor& src,
                         const at::Tensor& dst, int64_t packed_taps) {
  const auto cl = at::MemoryFormat::ChannelsLast;
  return !(src.is_contiguous() && dst.is_contiguous()) && src.is_contiguous(cl) &&
         dst.is_contiguous(cl) && suits_channels_last(k, g, src, packed_taps);
}

// NCHW calls that the channels-last kernels run faster, copies in and out included (measured
// layer by layer, 2 threads: bench/NOTES.md v8 and v9). `g` is the call's forward form (an
// input-gradient phase for that op), `strided` the op's stride. The depthwise layers that run
// plane by plane (runs_by_planes below; NOTES v14) are asked first and never copied.
// - Narrow images (has_narrow_rows: most of a vector's pixel lanes would idle by rows):
//   depthwise layers, every op; strided layers' forward and input gradient (NCHW staging
//   splits each row into phases); channel-rich layers (512->512 3x3 on 7x7, 16 lanes: forward
//   0.90, input gradient 0.86 of the NCHW time; MobileNetV2's and ResNet's 1x1 layers on 7x7,
//   since the channels-last packing transposes by vectors: 0.72-1.0, NOTES v16); every weight
//   gradient; every op on maps of at most half a vector of pixels.
// - Weight gradients on any image, for kernels of more than one tap or strided ones, with at
//   least 8 src channels a group, depthwise aside: the NCHW kernels add 16 lanes per weight
//   element per chunk, the NHWC ones none (64->64 3x3 on 56x56 1.73 -> 1.18, 128->128 on
//   28x28 1.82 -> 1.08). An unstrided 1x1 on a wide image stays NCHW (0.56; 2.03 via NHWC),
//   and so do a wide depthwise layer and a 3-channel stem.
// - Input gradients of strided kernels of more than one tap (128->256 3x3/2 on 28x28: 1.42 ->
//   1.01); a strided 1x1's one phase stays NCHW (0.61; 0.68 via NHWC).
enum class Op { forward, input_grad, weight_grad };

// The copies (`copied`: the two tensors the route copies, in bytes) stay within 32 MiB, so that
// the route never costs scratch on the scale of a large image's tensors.
constexpr int64_t kMaxLayoutCopyBytes = int64_t{32} << 20;

// At least 48 channels in and out a group: enough sums per copied pixel for a route via NHWC.
bool channel_rich(const Geometry& g) {
  return g.in_channels_per_group() >= 48 && g.out_channels_per_group() >= 48;
}

// At 8 float lanes (AVX2), channel-rich layers on maps of at most 28x28: the NCHW tile (6 dst
// channels x 2 vectors of pixels) reads, per tile, every src channel's rows and 6 channels'
// weights of every tap (55 KiB for 256 channels 3x3), which outgrow the 32 KiB L1; perf put it
// at 45 % of the FMA peak on 256->256 3x3 on 14x14 (Zen 3), where the NHWC tiles' src-channel
// passes keep their weights in L2 and their src in L1. Copies in and out included, via NHWC
// ran 0.62-0.86 of the NCHW time on ResNet-18's 3x3 and 1x1/2 layers at 28x28 and below and
// MobileNetV2's 1x1 layers on 7x7 and 14x14 (forward), 0.65-0.80 of it for input gradients
// (NOTES v17). Where the copies weigh more against the sums (fewer multiply-adds per byte
// copied: 64->128 1x1/2 on 56x56, 5 a byte, 1.25x the NCHW time; 384->64 1x1 on 14x14's input
// gradient, 14 a byte, 1.17x), and on 56x56 maps (even), NCHW stays.
// Weight gradients (whose 3x3 and strided kernels go via NHWC on any map, below): the
// unstrided 1x1 ones on maps of at most 8x8, whose NCHW vectors of 8 pixels hold one 7-wide row
// each (MobileNetV2's on 7x7: 0.67-0.70 of the NCHW time via NHWC; on 14x14 1.2-1.3x it).
bool channel_rich_on_small_map_at_8_lanes(const IsaKernels* k, const Geometry& g,
                                          int64_t copied, Op op) {
  if (k->float_lanes != 8) return false;
  const int64_t per_byte = op == Op::forward ? 8 : 24;
  const int64_t plane = op == Op::weight_grad ? 8 * 8 : 28 * 28;
  return channel_rich(g) && g.output_plane() <= plane && multiply_adds(g) >= per_byte * copied;
}

bool faster_as_channels_last(const IsaKernels* k, Op op, const Geometry& g,
                             const at::Tensor& src, int64_t packed_taps, bool strided,
                             int64_t copied) {
  if (!suits_channels_last(k, g, src, packed_taps)) return false;
  if (copied > kMaxLayoutCopyBytes) return false;
  const bool depthwise = g.in_channels_per_group() == 1 && g.out_channels_per_group() == 1;
  // Maps of at most half a vector (1x1 and 2x2 in a CIFAR-sized ResNet's last stages): NCHW
  // fills one vector an image with them, NHWC tiles take pixels of several images.
  if (has_narrow_rows(g, k->float_lanes))
    return depthwise || strided || op == Op::weight_grad ||
           2 * g.output_plane() <= k->float_lanes || channel_rich(g);
  if (depthwise) return false;
  if (channel_rich_on_small_map_at_8_lanes(k, g, copied, op)) return true;
  switch (op) {
    // at least a full NHWC tile of src channels (8): a 3-channel stem's tiles split 2 + 1, and
    // its weight gradient ran 1.25 NCHW, 2.5 via NHWC
    case Op::weight_grad:
      return g.in_channels_per_group() >= 8 && (g.kernel_area() > 1 || strided);
    case Op::input_grad: return strided && packed_taps > 1;  // the op's taps, not the phase's
    case Op::forward: return false;
  }
  return false;
}

bool strided(const Geometry& g) { return g.rows.stride > 1 || g.cols.stride > 1; }

// Depthwise layers that the NCHW kernels run plane by plane (plan.h), without copies to NHWC
// (576 dw 3x3/2 on 14x14: forward 2.7x torch's time via the copies, weight gradient 2.0x).
bool runs_by_planes(const IsaKernels* k, const Geometry& g, const at::Tensor& src) {
  return k && depthwise_by_planes(g, lanes_for(k, src), scalar_bytes(src));
}
bool input_grad_runs_by_planes(const IsaKernels* k, const Geometry& g, const at::Tensor& src) {
  return k && input_grad_by_planes(g, lanes_for(k, src), scalar_bytes(src));
}

// Image by image, dst (cols x rows) = src (rows x cols) transposed, in tiles of 32 x 32 that stay
// in L1. torch's own copy of a channels_last (8, 64, 112, 112) tensor to NCHW ran at 2.5 GB/s
// on the Xeon (20.8 ms, two fifths of the 7x7/2 stem's channels_last input gradient); this one
// makes that input gradient 1.6x faster. The other way torch's copy is as fast as this (A/B
// within 5 % on ResNet's layers), and stays.
template <typename E>
void transpose_images(const void* from, void* to, int64_t images, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const E* src = static_cast<const E*>(from);
  E* dst = static_cast<E*>(to);
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int64_t tiles = row_tiles * col_tiles;
  at::parallel_for(0, images * tiles, 16, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / tiles, r0 = u % tiles / col_tiles * kTile, c0 = u % col_tiles * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      const E* s = src + n * rows * cols;
      E* d = dst + n * rows * cols;
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) d[c * rows + r] = s[r * cols + c];
    }
  });
}

// `t` (N, C, H, W) contiguous NCHW: NHWC ones (each image H * W rows of C) through
// transpose_images.
at::Tensor nchw(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  if (t.dim() != 4 || !t.is_contiguous(at::MemoryFormat::ChannelsLast)) return t.contiguous();
  const at::Tensor out = at::empty(t.sizes(), t.options());
  const int64_t images = t.size(0), rows = t.size(2) * t.size(3), cols = t.size(1);
  const void* from = t.const_data_ptr();
  void* to = out.mutable_data_ptr();
  switch (t.element_size()) {
    case 2: transpose_images<uint16_t>(from, to, images, rows, cols); break;
    case 4: transpose_images<uint32_t>(from, to, images, rows, cols); break;
    case 8: transpose_images<uint64_t>(from, to, images, rows, cols); break;
    default: return t.contiguous();
  }
  return out;
}
at::Tensor nhwc(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// `run` with a result in `format`: `result` itself, or a buffer copied into it.
template <typename Run>
void into(const at::Tensor& result, const Run& run,
          at::MemoryFormat format = at::MemoryFormat::Contiguous) {
  if (result.is_contiguous(format)) return run(result);
  const at::Tensor r = at::empty(result.sizes(), result.options().memory_format(format));
  run(r);
  result.copy_(r);
}

// Whether no element has an exponent of all ones (inf or NaN), in one pass over the bits (a
// loop the compiler vectorizes), allocating nothing: `weight.isfinite().all()` makes a bool
// tensor of the weight's size, which cost the input gradient of a 512->512 layer a fifth.
// In parallel: run by one thread while the others spin at the barrier of the op's last loop, a
// 512->512 3x3 weight's check (9 MiB) took 8 % of its input gradient on 7x7 images twice over.
template <typename Bits>
bool no_inf_or_nan(const void* data, int64_t n, Bits exponent) {
  const Bits* p = static_cast<const Bits*>(data);
  std::atomic<bool> bad{false};
  at::parallel_for(0, n, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool b = false;
    for (int64_t i = begin; i < end; ++i) b |= (p[i] & exponent) == exponent;
    if (b) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

bool all_finite(const at::Tensor& t) {
  const void* p = t.const_data_ptr();
  const int64_t n = t.numel();
  switch (t.scalar_type()) {
    case at::kFloat: return no_inf_or_nan<uint32_t>(p, n, 0x7f800000u);
    case at::kDouble: return no_inf_or_nan<uint64_t>(p, n, 0x7ff0000000000000ull);
    case at::kHalf: return no_inf_or_nan<uint16_t>(p, n, 0x7c00u);
    case at::kBFloat16: return no_inf_or_nan<uint16_t>(p, n, 0x7f80u);
    default: return t.isfinite().all().item<bool>();
  }
}

void forward(const Geometry& g, const at::Tensor& input, const at::Tensor& weight,
             const std::optional<at::Tensor>& bias, const at::Tensor& output) {
  const IsaKernels* k = fast_path_for(g);
  // The fast path skips the taps that read only padding, whose inf or NaN weights would make
  // F.conv2d's NaN (forward_form.h: has_padding_taps).
  if (k && has_padding_taps(g) && !all_finite(weight)) k = nullptr;
  const int64_t taps = g.kernel_area();
  if (takes_channels_last(k, g, input, output, taps))
    return k->channels_last.forward(g, input, weight, bias, output);
  if (!runs_by_planes(k, g, input) &&
      faster_as_channels_last(k, Op::forward, g, input, taps, strided(g),
                              input.nbytes() + output.nbytes()))
    return into(output, [&](const at::Tensor& out) {
      k->channels_last.forward(g, nhwc(input), weight, bias, out);
    }, at::MemoryFormat::ChannelsLast);
  const at::Tensor oihw = weight.contiguous();
  into(output, [&](const at::Tensor& out) {
    if (k) return k->ops.forward(g, nchw(input), oihw, bias, out);
    portable::forward(g, nchw(input), oihw, bias, out);
  });
}

void input_grad(const Geometry& g, const at::Tensor& grad_output, const at::Tensor& weight,
                const at::Tensor& grad_input) {
  // The fast path correlates grad_output padded with zeros, where a non-finite weight would
  // make NaN (inf * 0) that F.conv2d's input gradient does not have.
  const IsaKernels* k = fast_path_for(g);
  if (k && !all_finite(weight)) k = nullptr;  // OIHW or OHWI, dense either way
  // Its correlations' geometry: grad_output's channels in, the input's out; a phase packs at
  // most every tap.
  const Geometry phase = input_grad_phases(g).front().g;
  const int64_t taps = g.kernel_area();
  if (takes_channels_last(k, phase, grad_output, grad_input, taps))
    return k->channels_last.input_grad(g, grad_output, weight, grad_input);
  // A depthwise layer at stride 2 runs plane by plane in NCHW, no phases and no copies (576 dw
  // 3x3/2 on 14x14 via NHWC copies: 1.8x torch's time; the 192 on 28x28 as phases: 3x).
  if (!input_grad_runs_by_planes(k, g, grad_output) &&
      faster_as_channels_last(k, Op::input_grad, phase, grad_output, taps, strided(g),
                              grad_output.nbytes() + grad_input.nbytes()))
    return into(grad_input, [&](const at::Tensor& out) {
      k->channels_last.input_grad(g, nhwc(grad_output), weight, out);
    }, at::MemoryFormat::ChannelsLast);
  const at::Tensor oihw = weight.contiguous();
  into(grad_input, [&](const at::Tensor& out) {
    if (k) return k->ops.input_grad(g, nchw(grad_output), oihw, out);
    portable::input_grad(g, nchw(grad_output), oihw, out);
  });
}

// A 1x1 kernel at a stride, without padding, reads only every stride-th row and column: its
// sums are those of the same kernel at stride 1 over that subsample (the same products, in the
// same order). `sub` is that geometry.
bool reads_a_subsample(const Geometry& g, Geometry& sub) {
  if (!strided(g) || g.kernel_area() != 1 || g.rows.padding != 0 || g.cols.padding != 0)
    return false;
  sub = g;
  for (Axis* a : {&sub.rows, &sub.cols}) {
    a->input = a->output;
    a->stride = 1;
  }
  return true;
}
at::Tensor subsample(const at::Tensor& t, const Geometry& g) {
  return t.slice(2, 0, g.rows.output * g.rows.stride, g.rows.stride)
      .slice(3, 0, g.cols.output * g.cols.stride, g.cols.stride);
}

void weight_grad(const Geometry& g, const at::Tensor& input, const at::Tensor& grad_output,
                 const at::Tensor& grad_weight) {
  const IsaKernels* k = fast_path_for(g);
  into(grad_weight, [&](const at::Tensor& out) {
    if (takes_channels_last(k, g, input, grad_output, 0))
      return k->channels_last.weight_grad(g, input, grad_output, out);
    if (!runs_by_planes(k, g, input) &&
        faster_as_channels_last(k, Op::weight_grad, g, input, 0, strided(g),
                                input.nbytes() + grad_output.nbytes())) {
      // A strided 1x1's NHWC copy needs only the pixels it reads: at stride 2 a quarter of the
      // input (64->128 1x1/2 on 56x56: that copy 0.67 -> 0.14 ms, the op 2.0-3.4x torch's).
      Geometry sub;
      if (reads_a_subsample(g, sub))
        return k->channels_last.weight_grad(sub, nhwc(subsample(input, g)), nhwc(grad_output),
                                            out);
      return k->channels_last.weight_grad(g, nhwc(input), nhwc(grad_output), out);
    }
    if (k) return k->ops.weight_grad(g, nchw(input), nchw(grad_output), out);
    portable::weight_grad(g, nchw(input), nchw(grad_output), out);
  });
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const IsaKernels* k : instantiations())
    if (k->supported()) names.emplace_back(k->name);
  names.emplace_back("portable");
  return names;
}

std::string selected_isa() {
  const IsaKernels* k = selected().load();
  return k ? k->name : "portable";
}

void select_isa(const std::string& name) { selected().store(find(name)); }

int64_t fast_path_min_macs() { return kMinFastMacs; }

const Corr2dKernels& kernels() {
  static const Corr2dKernels k{&forward, &input_grad, &weight_grad, true};
  return k;
}

}  // namespace cpu
}  // namespace corr2d_ext
