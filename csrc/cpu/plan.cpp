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
// The weight gradient splits its sum into chunks only while there are fewer weight blocks than
// this many tasks, and into at most kMaxChunks.
constexpr int64_t kMinWeightGradTasks = 64;
constexpr int64_t kMaxChunks = 16;

int64_t div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }

// dst rows per task: at least enough for `min_slots` vectors (to fill the micro-kernel when
// rows are narrow), and enough that the (kh - 1) * dh extra rows every block stages are a
// small overhead, as long as one group's staged rows fit in kSlabBytes. Depends on the
// geometry only: the weight gradient's summation order follows the row blocks, and must not
// change with the threads.
int64_t rows_per_task(const Geometry& g, int lanes, int64_t min_slots, int64_t elem_bytes,
                      int64_t channels) {
  const Axis& rows = g.rows;
  const int64_t vectors_per_row = div_up(g.cols.output, lanes);
  const int64_t at_least = std::min(rows.output, div_up(min_slots, vectors_per_row));
  const int64_t halo = (rows.kernel - 1) * rows.dilation;
  const int64_t row_bytes = channels * Slab(g, lanes, 1).row_stride * elem_bytes;
  if (g.batch >= kWholeImageBatch && Slab(g, lanes, rows.output).rows * row_bytes <= kSlabBytes / 4)
    return rows.output;
  int64_t n = std::min(rows.output, std::max(at_least, 4 * halo));
  while (n > at_least && ((n - 1) * rows.stride + halo + 1) * row_bytes > kSlabBytes) --n;
  return std::max<int64_t>(n, 1);
}

}  // namespace

WeightLayout forward_weight_layout(const Geometry& g) {
  const int64_t ka = g.kernel_area();
  const int64_t cin = g.in_channels_per_group();
  return {g.out_channels_per_group() * cin * ka, cin * ka, ka, g.cols.kernel, 1, 0};
}

Geometry input_grad_correlation(const Geometry& g) {
  const auto flip = [](const Axis& a) {
    return Axis{a.output, a.input, a.kernel, 1, a.dilation * (a.kernel - 1) - a.padding,
                a.dilation};
  };
  return Geometry{g.batch, g.out_channels, g.in_channels, g.groups, flip(g.rows), flip(g.cols)};
}

WeightLayout input_grad_weight_layout(const Geometry& g) {
  // Element (d = input channel, s = output channel within the group, tap t) of the flipped,
  // transposed weight is w[group][s][d mod C_in/groups][kernel_area - 1 - t].
  const int64_t ka = g.kernel_area();
  const int64_t cin = g.in_channels_per_group();
  return {g.out_channels_per_group() * cin * ka, ka, cin * ka, -g.cols.kernel, -1, ka - 1};
}

Slab::Slab(const Geometry& g, int lanes_, int64_t dst_rows) : lanes(lanes_) {
  rows = (dst_rows - 1) * g.rows.stride + (g.rows.kernel - 1) * g.rows.dilation + 1;
  x_alloc = round_up(g.cols.output, lanes);
  // The last vector of the last tap reads index x_alloc - 1 + ((kw - 1) * dw) / sw.
  phase_len = x_alloc + ((g.cols.kernel - 1) * g.cols.dilation) / g.cols.stride + 1;
  row_stride = g.cols.stride * phase_len;
  channel_stride = rows * row_stride;
}

std::vector<int64_t> tap_offsets(const Geometry& g, const Slab& s) {
  std::vector<int64_t> off(g.kernel_area());
  for (int64_t kh = 0; kh < g.rows.kernel; ++kh)
    for (int64_t kw = 0; kw < g.cols.kernel; ++kw) {
      const int64_t col = kw * g.cols.dilation;
      off[kh * g.cols.kernel + kw] = kh * g.rows.dilation * s.row_stride +
                                     (col % g.cols.stride) * s.phase_len + col / g.cols.stride;
    }
  return off;
}

SlotTable::SlotTable(const Geometry& g, const Slab& s, int64_t rows) {
  const int64_t w = g.cols.output;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t x0 = 0; x0 < w; x0 += s.lanes) {
        const bool whole = x0 + s.lanes <= w;
        if (whole != (pass == 0)) continue;
        in_off.push_back(r * g.rows.stride * s.row_stride + x0);
        out_off.push_back(r * w + x0);
        gy_off.push_back(r * s.x_alloc + x0);
        valid.push_back(static_cast<int>(std::min<int64_t>(s.lanes, w - x0)));
        full += whole;
      }
}

CorrelationPlan::CorrelationPlan(const Geometry& g, int lanes, int64_t elem_bytes, int min_slots) {
  const int64_t cin = g.in_channels_per_group();
  const int64_t cout = g.out_channels_per_group();
  dst_rows = g.rows.output;
  rows = rows_per_task(g, lanes, min_slots, elem_bytes, cin);
  blocks_per_image = div_up(dst_rows, rows);
  tasks = g.batch * blocks_per_image;
  // Every task stages a whole block of rows (the last block's extra rows are staged but never
  // read), so the slab's layout, the tap offsets and the slots are computed once per call.
  slab = Slab(g, lanes, rows);
  tap_off = tap_offsets(g, slab);
  full_slots = SlotTable(g, slab, rows);
  last_slots = SlotTable(g, slab, dst_rows - (blocks_per_image - 1) * rows);
  // Output-channel blocks of 4, or of 3 where that divides a group evenly (LeNet's 6).
  ocb = cout % 4 == 0 || cout % 3 != 0 ? 4 : 3;
  const int64_t macs_per_task = rows * g.cols.output * g.out_channels * cin * g.kernel_area();
  grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, macs_per_task));
  groups_per_stage = 1;
  if (cin == 1 && cout == 1) {
    const int64_t per_channel = slab.channel_stride * elem_bytes;
    groups_per_stage = std::clamp<int64_t>(kSlabBytes / 4 / per_channel, 1, g.groups);
  }
}

WeightGradPlan::WeightGradPlan(const Geometry& g, int lanes, int64_t elem_bytes) {
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

  rows = rows_per_task(g, lanes, kWeightGradSlots, elem_bytes, ic_block);
  blocks_per_image = div_up(g.rows.output, rows);
  total_blocks = g.batch * blocks_per_image;
  chunks = std::clamp<int64_t>(div_up(kMinWeightGradTasks, weight_blocks), 1,
                               std::min(kMaxChunks, total_blocks));
  blocks_per_chunk = div_up(total_blocks, chunks);
  chunks = div_up(total_blocks, blocks_per_chunk);

  slab = Slab(g, lanes, rows);
  tap_off = tap_offsets(g, slab);
  full_slots = SlotTable(g, slab, rows);
  last_slots = SlotTable(g, slab, g.rows.output - (blocks_per_image - 1) * rows);
}

}  // namespace cpu
}  // namespace corr2d_ext
