// The ISA-neutral plan of the CPU fast path (see plan.h): task cutting, slab layout, slots and
// the weight gradient's blocking. Computed once per call, before any task starts.
#include "plan.h"

#include <algorithm>

namespace corr2d_ext {
namespace cpu {
namespace {

// The staged rows of one group (or one chunk of depthwise channels) should stay in L2.
constexpr int64_t kSlabBytes = 96 * 1024;
// Small images in a batch of at least this many are taken whole by a task (every input row
// staged once, read in order), if the batch alone gives the threads enough tasks.
constexpr int64_t kWholeImageBatch = 4;
// Slots per weight-gradient row block: the accumulators are loaded and stored once per pass
// over the block's slots, so more slots amortize that; the staged rows must still fit in L2.
constexpr int64_t kWeightGradSlots = 48;
// A weight-gradient task's accumulators (lanes x its weight block) stay within this, whatever
// the weight's size: the bound on the op's scratch, with the slab, per thread.
constexpr int64_t kLaneBufferBytes = 256 * 1024;
constexpr int64_t kWeightGradMaxOcBlock = 32;
// A block of whole small images stages at most this much (it must hold every channel of a
// group for all its images, and every tile streams it: it should stay in L2), and a forward call is cut into at least kMinTasks tasks.
constexpr int64_t kImageGroupBytes = 1024 * 1024;
constexpr int64_t kMinTasks = 16;
// The weight gradient splits its sum into chunks only while there are fewer weight blocks than
// this many tasks, and into at most kMaxChunks.
constexpr int64_t kMinWeightGradTasks = 64;
constexpr int64_t kMaxChunks = 16;
constexpr int64_t kMinChunkVectors = 128;
// What a call may hold beyond its output, whatever the layer's size: rows staged once for all
// tasks, and the weights packed once (ukernels.h), each within its bound; beyond them, tasks
// stage and pack their own (per thread, bounded by kSlabBytes and the lane buffer).
constexpr int64_t kSharedStageBytes = 24 << 20;
constexpr int64_t kPackedWeightBytes = 16 << 20;
// The channels-last forward runs every block inside each tile where all of a layer's packed
// weights (in the kernels' scalar: float for bfloat16) stay in L1 with room for the tiles' src: a
// 3-channel stem's 3.5 KiB.
constexpr int64_t kInsideTilesWeightBytes = 16 << 10;

int64_t div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

// dst rows per task: at least enough for `min_slots` vectors (to fill the micro-kernel when
// rows are narrow), and enough that the (kh - 1) * dh extra rows every block stages are a
// small overhead, as long as one group's staged rows fit in kSlabBytes. Depends on the
// geometry only: the weight gradient's summation order follows the row blocks, and must not
// change with the threads.
int64_t rows_per_task(const Geometry& g, int lanes, bool folded, int64_t min_slots,
                      int64_t elem_bytes, int64_t channels) {
  const Axis& rows = g.rows;
  // Enough rows for min_slots vectors: whole rows of vectors, or (folded) the rows' pixels.
  const int64_t at_least =
      std::min(rows.output, folded ? div_up(min_slots * lanes, g.cols.output)
                                   : div_up(min_slots, div_up(g.cols.output, lanes)));
  const int64_t halo = (rows.kernel - 1) * rows.dilation;
  const int64_t row_bytes =
      channels * Slab(g, lanes, 1, folded).elements_per_row(g) * elem_bytes;
  if (g.batch >= kWholeImageBatch &&
      Slab(g, lanes, rows.output, folded).rows * row_bytes <= kSlabBytes / 4)
    return rows.output;
  int64_t n = std::min(rows.output, std::max(at_least, 4 * halo));
  while (n > at_least && ((n - 1) * rows.stride + halo + 1) * row_bytes > kSlabBytes) --n;
  return std::max<int64_t>(n, 1);
}

}  // namespace

DstLayout channels_last(const DstLayout& nchw, int64_t channels) {
  // Pixel offsets within a plane, scaled by the channels; a channel is one element on.
  return {nchw.image, 1, nchw.row * channels, nchw.col * channels, nchw.offset * channels};
}

bool has_narrow_rows(const Geometry& g, int lanes) {
  // By rows, a dst row takes round_up(w, lanes) lanes; narrow when fewer than 4 in 5 work.
  const int64_t w = g.cols.output;
  return 5 * w < 4 * round_up(w, lanes);
}

InputGradPlanes::InputGradPlanes(const Geometry& g, int lanes) {
  const Axis& r = g.rows;
  const Axis& c = g.cols;
  // Vectors of phase columns a row: phase 0 has ceil(W / 2) columns, phase 1 floor(W / 2).
  chunks = (c.input + 2 * lanes - 1) / (2 * lanes);
  int64_t d_min = 0, d_max = 0;
  for (int q = 0; q < 2; ++q)
    for (int64_t kw = 0; kw < c.kernel; ++kw)
      if (((q + c.padding - kw) & 1) == 0) {
        const int64_t d = (q + c.padding - kw) / 2;  // exact: the numerator is even
        taps[q].push_back({kw, d});
        d_min = std::min(d_min, d);
        d_max = std::max(d_max, d);
      }
  // Grad_input row y reads grad_output rows (y + ph - kh) / 2 for kh of its parity.
  row_lo = div_floor(r.padding - (r.kernel - 1), 2);
  rows = std::max<int64_t>(0, div_floor(r.input - 1 + r.padding, 2) + 1 - row_lo);
  left = -d_min;
  // Also room for the staging's whole-vector stores of a row (copy_run: round_up(W_out)).
  width = round_up(left + std::max(chunks * lanes + d_max, round_up(c.output, lanes)), lanes);
}

bool input_grad_by_planes(const Geometry& g, int lanes, int64_t elem) {
  if (g.in_channels_per_group() != 1 || g.out_channels_per_group() != 1) return false;
  for (const Axis* a : {&g.rows, &g.cols})
    if (a->stride != 2 || a->dilation != 1) return false;
  return InputGradPlanes(g, lanes).size() * elem <= 256 * 1024;
}

SrcPlanes::SrcPlanes(const Geometry& g, int lanes) {
  stride = g.cols.stride;
  chunks = (g.cols.output + lanes - 1) / lanes;
  // The columns the dst pixels' taps reach, and those the chunks' vectors reach, in whole
  // vectors, with room for the split's whole-vector stores past split_len (split_in_two).
  split_len = g.cols.output + (g.cols.kernel - 1) / stride;
  phase_len = round_up(std::max(chunks * lanes + (g.cols.kernel - 1) / stride,
                                split_len + lanes - 1), lanes);
  // One vector of slack: stage_row's whole-vector stores run up to a vector past phase_len.
  row_stride = stride * phase_len + lanes;
  rows = (g.rows.output - 1) * g.rows.stride + g.rows.kernel;
  for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
    for (int64_t kw = 0; kw < g.cols.kernel; ++kw)
      tap_off.push_back(kh * row_stride + kw % stride * phase_len + kw / stride);
}

bool depthwise_by_planes(const Geometry& g, int lanes, int64_t elem) {
  if (g.in_channels_per_group() != 1 || g.out_channels_per_group() != 1) return false;
  if (g.rows.stride != g.cols.stride || g.rows.stride > 2) return false;
  if (g.rows.dilation != 1 || g.cols.dilation != 1) return false;
  return SrcPlanes(g, lanes).size() * elem <= 256 * 1024;
}

bool folds(const Geometry& g, const DstLayout&, int lanes) {
  // Folded vectors run across dst rows (in a dst whose rows are not contiguous, as an
  // input-gradient phase's, each lane is stored on its own: SlotTable::lane_off).
  if (has_narrow_rows(g, lanes)) return true;
  // Channel-rich layers at stride 1 fold whenever a row's last vector is partial (ResNet's 56
  // and 28 at 16 lanes, 28 and 14 at 8): their sums are cout x taps multiply-adds per staged
  // element, so the kernel-width copies cost nothing next to the idle eighth of the lanes.
  // Measured (2 threads, 3x3): 64->64 on 56x56 and 128->128 on 28x28 forwards 7-13 % faster on
  // AVX-512, 7-12 % on AVX2 at 28 and 14. Not where a row is one vector or less (14 at 16
  // lanes: 4-8 % slower), nor strided (the copies double: 3x3/2 and 1x1/2 10-40 % slower), nor
  // depthwise (staging is then as costly as the sums: 4x slower).
  const int64_t w = g.cols.output;
  return g.cols.stride == 1 && w > lanes && w % lanes != 0 && g.out_channels_per_group() >= 16;
}

bool reads_in_place(const Geometry& g, const DstLayout& dst, bool same_dtype) {
  const auto plain = [](const Axis& a) {
    return a.kernel == 1 && a.stride == 1 && a.padding == 0 && a.input == a.output;
  };
  return same_dtype && plain(g.rows) && plain(g.cols) && dst.col == 1 &&
         dst.row == g.cols.output && dst.channel == g.output_plane();
}

Slab Slab::src_in_place(const Geometry& g, int lanes, int64_t dst_rows, int64_t images) {
  Slab s(g, lanes, dst_rows, true, images);
  s.in_place = true;
  s.image_stride = g.in_channels * g.input_plane();
  s.channel_stride = g.input_plane();
  return s;
}

Slab::Slab(const Geometry& g, int lanes_, int64_t dst_rows, bool folded_, int64_t images_)
    : folded(folded_), images(images_), lanes(lanes_) {
  rows = (dst_rows - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1;
  x_alloc = round_up(g.cols.output, lanes);
  // The last vector of the last tap reads index x_alloc - 1 + ((kw - 1) * dw) / sw.
  phase_len = x_alloc + ((g.cols.kernel - 1) * g.cols.dilation) / g.cols.stride + 1;
  row_stride = g.cols.stride * phase_len;
  width = g.cols.output;
  phase_rows = div_up(rows, g.rows.stride);
  copy_stride = phase_rows * width;
  image_stride = folded ? g.cols.kernel * g.rows.stride * copy_stride : rows * row_stride;
  channel_stride = images * image_stride + lanes;
}

Blocks::Block Blocks::operator[](int64_t b) const {
  const int64_t group = b / per_image;
  const int64_t y0 = (b % per_image) * rows;
  const int64_t n0 = group * images;
  return {n0, std::min(images, batch - n0), y0, std::min(rows, dst_rows - y0)};
}

Blocks make_blocks(const Geometry& g, int lanes, bool folded, int64_t min_slots,
                   int64_t elem_bytes, int64_t channels) {
  Blocks b;
  b.batch = g.batch;
  b.dst_rows = g.rows.output;
  b.rows = rows_per_task(g, lanes, folded, min_slots, elem_bytes, channels);
  b.per_image = div_up(b.dst_rows, b.rows);
  b.images = 1;
  if (b.per_image == 1) {
    // Whole images: take enough of them for min_slots vectors, within kImageGroupBytes.
    const int64_t w = g.cols.output;
    const int64_t slots = folded ? div_up(b.rows * w, lanes) : b.rows * div_up(w, lanes);
    const int64_t bytes = channels * Slab(g, lanes, b.rows, folded).image_stride * elem_bytes;
    b.images = std::clamp<int64_t>(
        std::min(div_up(min_slots, slots), kImageGroupBytes / std::max<int64_t>(1, bytes)), 1,
        g.batch);
    // Groups of equal size (7 + 1 images of a batch of 8 would give one thread 7/8 of the
    // work when the groups are few): as many groups, as few images each as that allows.
    b.images = div_up(g.batch, div_up(g.batch, b.images));
  }
  b.image_groups = div_up(g.batch, b.images);
  b.count = b.image_groups * b.per_image;
  return b;
}


std::vector<int64_t> tap_offsets(const Geometry& g, const Slab& s) {
  std::vector<int64_t> off(g.kernel_area());
  for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
    for (int64_t kw = 0; kw < g.cols.kernel; ++kw) {
      const int64_t row = kh * g.rows.dilation, col = kw * g.cols.dilation;
      off[kh * g.cols.kernel + kw] =
          s.folded ? (kw * g.rows.stride + row % g.rows.stride) * s.copy_stride +
                         row / g.rows.stride * s.width
                   : row * s.row_stride + (col % g.cols.stride) * s.phase_len +
                         col / g.cols.stride;
    }
  return off;
}

SlotTable::SlotTable(const Geometry& g, const Slab& s, int64_t rows, int64_t images,
                     const DstLayout& dst, bool overlap) {
  const int64_t w = g.cols.output;
  // Whether a slot's pixels are one contiguous vector of the dst, or are stored lane by lane.
  const bool scatter = s.folded ? !(dst.col == 1 && dst.row == w) : dst.col != 1;
  // Whole vectors first, then the partial ones: (in, out, lanes, valid) of each, image by image.
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t i = 0; i < images; ++i) {
      const int64_t in0 = i * s.image_stride, out0 = i * dst.image;
      // A slot reading the slab at `in`, its lane k writing the dst at out + lane(k).
      const auto add = [&](int64_t in, int64_t out, int64_t n, const auto& lane) {
        const bool whole = n == s.lanes;
        if (whole != (pass == 0)) return;
        in_off.push_back(in0 + in);
        out_off.push_back(out0 + out);
        valid.push_back(static_cast<int>(n));
        if (scatter)
          for (int k = 0; k < s.lanes; ++k) lane_off.push_back(k < n ? lane(k) : 0);
        full += whole;
      };
      if (s.folded) {
        // Vectors of consecutive pixels p = y * w + x of the image's rows, across rows.
        const int64_t pixels = rows * w;
        const auto pixel = [&](int64_t q) { return q / w * dst.row + q % w * dst.col; };
        for (int64_t p = 0; p < pixels; p += s.lanes) {
          int64_t p0 = p, n = std::min<int64_t>(s.lanes, pixels - p);
          if (overlap && n < s.lanes && pixels >= s.lanes) p0 = pixels - s.lanes, n = s.lanes;
          if (scatter)
            add(p0, 0, n, [&](int k) { return pixel(p0 + k); });
          else
            add(p0, p0, n, [](int) { return int64_t{0}; });
        }
      } else {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t x0 = 0; x0 < w; x0 += s.lanes)
            add(r * g.rows.stride * s.row_stride + x0, r * dst.row + x0 * dst.col,
                std::min<int64_t>(s.lanes, w - x0), [&](int k) { return k * dst.col; });
      }
    }
}

SlotTables::SlotTables(const Geometry& g, const Slab& s, const Blocks& b, const DstLayout& dst,
                       bool overlap)
    : full(g, s, b.rows, b.images, dst, overlap),
      last_rows(g, s, b.dst_rows - (b.per_image - 1) * b.rows, 1, dst, overlap),
      last_images(g, s, b.rows, b.batch - (b.image_groups - 1) * b.images, dst, overlap) {}

CorrelationPlan::CorrelationPlan(const Geometry& g, const DstLayout& dst, int lanes,
                                 int64_t elem_bytes, bool same_dtype, int min_slots,
                                 const int* vectors_per_ocb) {
  const bool in_place = reads_in_place(g, dst, same_dtype);
  const bool folded = in_place || folds(g, dst, lanes);
  blocks = make_blocks(g, lanes, folded, min_slots, elem_bytes, g.in_channels_per_group());
  // In place, every block's pixels must fill a vector, for the overlapping last one.
  const int64_t last_rows = blocks.dst_rows - (blocks.per_image - 1) * blocks.rows;
  if (in_place && std::min(blocks.rows, last_rows) * g.cols.output >= lanes) {
    slab = Slab::src_in_place(g, lanes, blocks.rows, blocks.images);
  } else {
    if (folded != folds(g, dst, lanes))
      blocks = make_blocks(g, lanes, !folded, min_slots, elem_bytes, g.in_channels_per_group());
    slab = Slab(g, lanes, blocks.rows, folds(g, dst, lanes), blocks.images);
  }
  tap_off = tap_offsets(g, slab);
  slots = SlotTables(g, slab, blocks, dst, slab.in_place);
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  const bool depthwise = cin == 1 && cout == 1;
  // The tile (ocb channels x vectors_per_ocb[ocb] vectors) that wastes least: tiles pad the
  // block's slots up to whole multiples of their vectors and the group's channels up to whole
  // multiples of ocb, and each tile loads ocb + nv operands per ocb * nv multiply-adds.
  // (Wide images: 4 x 6 with 32 registers, 4 x 3 with 16; LeNet's 6 channels: 3 x 4; a 7x7
  // image's 4 vectors: 6 x 4.)
  const int64_t slots_per_block = slots.full.size();
  double best = 0;
  ocb = 1;
  for (int k = 1; k <= std::min<int64_t>(kMaxForwardOcb, cout); ++k) {
    const int64_t nv = vectors_per_ocb[k];
    const double padded = static_cast<double>(div_up(slots_per_block, nv) * nv) *
                          static_cast<double>(div_up(cout, k) * k);
    const double cost = padded * (1.0 + 0.25 * static_cast<double>(k + nv) / (k * nv));
    if (k == 1 || cost < best) best = cost, ocb = k;
  }
  // Few blocks (small images): split each block's channels so the threads have work.
  const int64_t most = depthwise ? g.groups : div_up(cout, ocb);
  pieces = std::clamp<int64_t>(div_up(kMinTasks, blocks.count), 1, most);
  tasks = blocks.count * pieces;
  const int64_t macs_per_task = blocks.images * blocks.rows * g.cols.output * g.out_channels *
                                cin * g.kernel_area() / pieces;
  grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, macs_per_task));
  block_stage = slab.size(g.in_channels);
  // (A depthwise block's pieces own distinct channels: nothing is staged twice.)
  shared_stage = !depthwise && !slab.in_place && pieces > 1 && blocks.count * block_stage * elem_bytes <= kSharedStageBytes;
  pack_once = g.out_channels * cin * g.kernel_area() * elem_bytes <= kPackedWeightBytes;
  groups_per_stage = 1;
  if (depthwise) {
    const int64_t per_channel = slab.channel_stride * elem_bytes;
    groups_per_stage = std::clamp<int64_t>(kSlabBytes / 4 / per_channel, 1, g.groups);
  }
}

WeightGradPlan::WeightGradPlan(const Geometry& g, int lanes, int64_t elem_bytes,
                               bool same_dtype) {
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  const int64_t taps = g.kernel_area();
  oc_block = std::min(cout, kWeightGradMaxOcBlock);
  const int64_t ic_max = std::clamp<int64_t>(
      kLaneBufferBytes / (oc_block * taps * lanes * elem_bytes), 1, cin);
  // Blocks of equal size, rather than full ones and a small remainder.
  ic_blocks = div_up(cin, ic_max);
  ic_block = div_up(cin, ic_blocks);
  ic_blocks = div_up(cin, ic_block);
  oc_blocks = div_up(cout, oc_block);
  oc_block = div_up(cout, oc_blocks);
  oc_blocks = div_up(cout, oc_block);
  weight_blocks = g.groups * oc_blocks * ic_blocks;

  // The weight gradient writes no dst: it folds whenever the rows are narrow, and reads its
  // input in place whenever it can (its masked loads never read past a block's pixels).
  const DstLayout unused = contiguous_dst_layout(g);
  const bool in_place = reads_in_place(g, unused, same_dtype);
  const bool folded = in_place || folds(g, unused, lanes);
  blocks = make_blocks(g, lanes, folded, kWeightGradSlots, elem_bytes, ic_block);
  slab = in_place ? Slab::src_in_place(g, lanes, blocks.rows, blocks.images)
                  : Slab(g, lanes, blocks.rows, folded, blocks.images);
  tap_off = tap_offsets(g, slab);
  slots = SlotTables(g, slab, blocks, unused);

  // Each chunk costs every accumulator a load, a store, a zeroing and a sum of its lanes: a
  // chunk must run at least kMinChunkVectors vectors through them to be worth it.
  const int64_t vectors = blocks.count * slots.full.size();
  chunks = std::clamp<int64_t>(
      std::min(div_up(kMinWeightGradTasks, weight_blocks), vectors / kMinChunkVectors), 1,
      std::min(kMaxChunks, blocks.count));
  blocks_per_chunk = div_up(blocks.count, chunks);
  chunks = div_up(blocks.count, blocks_per_chunk);
  block_input = slab.size(g.in_channels);
  // Shared only where it saves restaging: several weight blocks along the output channels.
  shared_stage = !slab.in_place && oc_blocks > 1 && blocks.count * block_input * elem_bytes <= kSharedStageBytes;
}

bool channels_last_fits(const Geometry& g, int lanes) {
  const int64_t cin = g.in_channels_per_group(), cout = g.out_channels_per_group();
  if (cin == 1 && cout == 1) return true;
  // At least 3 in 4 lanes of a group's channel vectors work (24 channels in 16 lanes, not 8).
  return 4 * cout >= 3 * round_up(cout, lanes);
}

bool channels_last_packs_within_bound(const Geometry& g, int64_t taps, int lanes,
                                      int64_t elem_bytes) {
  const bool depthwise = g.in_channels_per_group() == 1 && g.out_channels_per_group() == 1;
  const int64_t padded = depthwise ? round_up(g.out_channels, lanes)
                                   : g.groups * round_up(g.out_channels_per_group(), lanes);
  return padded * g.in_channels_per_group() * taps * elem_bytes <= kPackedWeightBytes;
}

WeightRuns weight_runs(const Geometry& g, const WeightLayout& wl) {
  const int64_t cin = g.in_channels_per_group();
  const int64_t kh = g.rows.kernel, kw = g.cols.kernel, taps = kh * kw;
  WeightRuns r;
  if (wl.tap_col == 1 && wl.tap_row == kw) {
    // Taps contiguous and in order: OIHW as it is. One run when the src channels' runs abut.
    if (wl.src == taps || cin == 1) {
      r.runs = 1;
      r.length = cin * taps;
    } else {
      r.runs = cin;
      r.run_stride = wl.src;
      r.length = taps;
      r.row_step = 1;
    }
    r.minor = taps;  // e = i * taps + t
    r.major_step = 1;
    r.minor_step = cin;
  } else if (wl.tap_col == -1 && wl.tap_row == -kw) {
    // Taps contiguous backwards (the flipped weight of a stride-1 input gradient): src channel
    // i's taps from the last, t = taps - 1 - e.
    r.runs = cin;
    r.run_stride = wl.src;
    r.start = -(taps - 1);
    r.length = taps;
    r.row0 = (taps - 1) * cin;
    r.row_step = 1;
    r.minor = taps;
    r.minor_step = -cin;
  } else if (wl.src == 1 && wl.tap_col == cin) {
    // OHWI: a kernel row's (kw, i) contiguous, e = kw * C_src + i, which is also its packed
    // row's offset from the kernel row's first; one run when the rows abut.
    const bool abut = wl.tap_row == kw * cin;
    r.runs = abut ? 1 : kh;
    r.run_stride = wl.tap_row;
    r.length = abut ? taps * cin : kw * cin;
    r.row_step = kw * cin;
    r.minor = r.length;
    r.minor_step = 1;
  }
  return r;
}

ChannelsLastPlan::ChannelsLastPlan(const Geometry& g, int lanes_, int max_vectors,
                                   int64_t elem_bytes)
    : lanes(lanes_) {
  depthwise = g.in_channels_per_group() == 1 && g.out_channels_per_group() == 1;
  channels = depthwise ? g.out_channels : g.out_channels_per_group();
  vectors = div_up(channels, lanes);
  block_vectors = std::min<int64_t>(vectors, max_vectors);
  group_blocks = div_up(vectors, block_vectors);
  blocks = depthwise ? group_blocks : g.groups * group_blocks;
  pixels = g.batch * g.output_plane();
  // A task's pixels, read once per block of dst channels, should stay in L2: at most 256 (of
  // several images where the maps are small), in chunks of equal size (8 14x14 maps in chunks
  // of 256 left a last one of 32, and one thread a quarter more work than the other), and
  // their blocks split where that does not make enough tasks.
  chunks = div_up(pixels, 256);
  chunk = div_up(pixels, chunks);
  pieces = std::clamp<int64_t>(div_up(kMinTasks, chunks), 1, blocks);
  tasks = chunks * pieces;
  const int64_t weights = g.kernel_area() * g.in_channels_per_group() * vectors * lanes;
  blocks_inside_tiles =
      depthwise || (g.groups == 1 && weights * elem_bytes <= kInsideTilesWeightBytes);
}

}  // namespace cpu
}  // namespace corr2d_ext
