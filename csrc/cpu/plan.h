// The ISA-neutral half of the CPU fast path: how a correlation is cut into tasks, how each
// task stages its source rows, where every vector of the micro-kernels reads and writes, and
// the fixed order in which the weight gradient's partial sums are added. Everything here is
// parameterized by the vector width (lanes) and the element size, never by an ISA, so the
// same plan serves AVX2, AVX-512, NEON and the generic test instantiations; ukernels.h runs it.
//
// Every correlation is taken in forward form, as a Geometry (corr2d.h): src (N, C_src, H, W)
// correlated with a weight into dst (N, C_dst, H_out, W_out). The forward op is its own
// Geometry; the input gradient is, stride phase by stride phase, the correlation of
// grad_output with a sub-kernel of the weight flipped and transposed, a Geometry whose
// padding may be negative (cropping), built by input_grad_phases() (../forward_form.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../corr2d.h"
#include "../forward_form.h"

namespace corr2d_ext {
namespace cpu {

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// The forward-form layouts and the input gradient's stride phases (WeightLayout, DstLayout,
// input_grad_phases) are shared with the CUDA launcher: ../forward_form.h.

// The same pixels as `nchw` in an NHWC dst of `channels` channels (each pixel's channels
// contiguous).
DstLayout channels_last(const DstLayout& nchw, int64_t channels);

// The staged rows of one task, in one of two layouts.
//
// By rows (the default): for every src channel, `rows` rows, each stored as `stride` phases of
// `phase_len` elements (all even columns, then all odd ones, for stride 2), so a strided read
// becomes a contiguous vector load. Element (channel c, staged row t, padded column pc) lives at
// c * channel_stride + t * row_stride + (pc % stride) * phase_len + pc / stride. A vector of
// dst pixels lies within one dst row.
//
// Folded (for dst rows narrower than a few vectors, where most lanes of a row's last vector
// would idle: 7x7 or 10x10 outputs in 16 lanes, or an input-gradient phase of 7x7 pixels two
// apart): for every src channel and kernel column kw,
// the staged rows' elements that column kw reads for dst columns 0 .. width - 1, contiguous,
// phase by row phase (staged row t in phase t % row stride, at index t / row stride). Then
// tap (kh, kw) of dst pixel p = y * width + x is at a fixed offset from p, so a vector of dst
// pixels runs across dst rows and only the task's last vector has idle lanes. It stages each
// src element once per kernel column: kernel width times the rows layout's copying.
//
// Both: zeros wherever the window reaches into padding or past the last column.
//
// In place (a 1x1 kernel at stride 1 without padding, where dst pixel p reads src pixel p of
// every channel, and src of the tensor's own dtype): nothing is staged; the "slab" is the src
// tensor itself, folded, with its own channel and image strides.
struct Slab {
  bool folded = false;
  bool in_place = false;
  int64_t rows;            // src rows staged per channel
  int64_t phase_len;       // by rows: elements per column phase
  int64_t row_stride;      // by rows: stride * phase_len
  int64_t width;           // folded: dst columns
  int64_t phase_rows;      // folded: staged rows per row phase
  int64_t copy_stride;     // folded: elements per (kernel column, row phase)
  int64_t channel_stride;  // elements per staged channel: its images, then one vector of slack
                           // for stage_row's whole-vector stores past the last row, so that
                           // channels can be staged by different threads
  int64_t x_alloc;         // by rows: dst columns rounded up to whole vectors
  int64_t image_stride;    // elements per staged image of one channel
  int64_t images;          // images staged together (small images: see Blocks)
  int lanes;

  Slab() = default;
  Slab(const Geometry& g, int lanes, int64_t dst_rows, bool folded, int64_t images = 1);
  static Slab src_in_place(const Geometry& g, int lanes, int64_t dst_rows, int64_t images);
  // Elements for `channels` staged channels, plus one vector of slack: staging writes whole
  // vectors and may run past the last row, and the last folded vector reads past it.
  int64_t size(int64_t channels) const { return channels * channel_stride + lanes; }
  // Elements staged per src row (what bounds a task's rows).
  int64_t elements_per_row(const Geometry& g) const {
    return folded ? g.cols.kernel * width : row_stride;
  }
};

// Whether most dst rows' last vector would idle most of its lanes by rows (7x7 or 10x10 in 16
// lanes): what makes narrow images take other routes (dispatch.cpp).
bool has_narrow_rows(const Geometry& g, int lanes);
// The input gradient of a depthwise layer at stride 2, plane by plane (ukernels.h:
// depthwise_input_grad_by_planes). Column x = 2j + q of grad_input (phase q) is reached
// through the taps kw of parity q + pw, each at grad_output column j + d, d = (q + pw - kw) / 2;
// `taps[q]` lists them, kw ascending. Each plane of grad_output is staged as rows r in
// [row_lo, row_lo + rows) (those outside the plane zero), each `width` elements: `left` zeros,
// its columns, zeros; so the loads of `chunks` vectors of phase columns, which reach columns
// [d_min, chunks * lanes + d_max), need no bounds.
struct InputGradPlanes {
  struct Tap {
    int64_t kw, d;
  };
  std::vector<Tap> taps[2];
  int64_t chunks, row_lo, rows, left, width;
  InputGradPlanes(const Geometry& g, int lanes);
  int64_t size() const { return rows * width; }
};
// Whether `g`'s input gradient (g its forward geometry) runs so rather than as four stride
// phases: depthwise (one channel in and out a group), stride 2 on both axes, no dilation, and
// a staged plane within 256 KiB (`elem` bytes an element), so that scratch stays an L2-sized
// buffer a thread whatever the image.
bool input_grad_by_planes(const Geometry& g, int lanes, int64_t elem);
// A depthwise layer's forward or weight gradient at stride 1 or 2 (both axes), plane by plane
// (ukernels.h: depthwise_forward_by_planes, depthwise_weight_grad_by_planes). A src plane is
// staged as the `rows` rows t = y + ph of the padded plane that some dst row reads,
// `row_stride` apart (the rows outside the image zero), each split into `stride` column
// phases of `phase_len` elements (phase q: padded columns q, q + stride, ...). Tap t = kh * kw_n
// + kw of the dst vector of row y and columns [m * lanes, (m + 1) * lanes) is then the load at
// y * stride * row_stride + m * lanes + tap_off[t]; `chunks` vectors cover a dst row. Of a
// phase, the first `split_len` elements are the columns some dst pixel reads (the rest is
// what its vectors' lanes past the row read, and is not added: ukernels.h).
struct SrcPlanes {
  int64_t stride, chunks, phase_len, split_len, row_stride, rows;
  std::vector<int64_t> tap_off;
  SrcPlanes(const Geometry& g, int lanes);
  int64_t size() const { return rows * row_stride; }
};
// Whether `g`'s forward and weight gradient run so (dispatch.cpp routes contiguous calls by
// it): depthwise, stride 1 or 2 on both axes, no dilation, a staged plane within 256 KiB
// (`elem` bytes an element).
bool depthwise_by_planes(const Geometry& g, int lanes, int64_t elem);
// Whether a correlation writing through `dst` stages folded (see Slab): narrow rows, or
// channel-rich ones whose last vector is part-filled.
bool folds(const Geometry& g, const DstLayout& dst, int lanes);
// Whether it can read its src in place (see Slab): `same_dtype` says the src tensor holds the
// kernels' own scalar type.
bool reads_in_place(const Geometry& g, const DstLayout& dst, bool same_dtype);

// Offset within one staged channel of tap t = kh * kernel_w + kw, for a dst pixel at slab
// position 0.
std::vector<int64_t> tap_offsets(const Geometry& g, const Slab& s);

// The sum over images and dst rows, cut into blocks that one task stages and runs at a time:
// `rows` dst rows of one image, or, for small images, `images` whole images (so that a block has
// enough vectors to fill the micro-kernel's tiles). Depends on the geometry, lanes and element
// size only.
struct Blocks {
  int64_t rows;          // dst rows per block
  int64_t per_image;     // row blocks per image (1 when blocks take whole images)
  int64_t images;        // whole images per block (1 unless per_image == 1)
  int64_t image_groups;  // blocks along the batch
  int64_t count;         // image_groups * per_image

  struct Block {
    int64_t n0, images, y0, rows;
  };
  Block operator[](int64_t b) const;
  int64_t batch, dst_rows;
};
Blocks make_blocks(const Geometry& g, int lanes, bool folded, int64_t min_slots,
                   int64_t elem_bytes, int64_t channels);

// The vectors of `lanes` dst pixels of a block (its "slots"), as offsets: slot v covers dst
// row r of the block's image i, columns x0 .. x0 + lanes - 1 (or, folded, `lanes` consecutive
// pixels of the image); it reads the slab at in_off[v] and writes dst at out_off[v] from the
// block's first pixel (the weight gradient reads grad_output there), and `valid` of its lanes
// are real (fewer at the right edge). Whole vectors come first.
struct SlotTable {
  std::vector<int64_t> in_off, out_off;
  // Where the dst's pixels are not contiguous (an input-gradient phase writes every stride-th
  // one): for every slot, the dst offset of each of its `lanes` pixels from out_off. Empty
  // where a slot's pixels are one contiguous vector of the dst.
  std::vector<int64_t> lane_off;
  std::vector<int> valid;
  int full = 0;  // the first `full` slots are whole vectors

  SlotTable() = default;
  // overlap: a folded image's last partial vector is moved back to end at the image's last
  // pixel and made whole (recomputing a few pixels, the same values, in the same task), so
  // that no load reads past the image: for a forward read in place, which has no masked loads.
  SlotTable(const Geometry& g, const Slab& s, int64_t rows, int64_t images, const DstLayout& dst,
            bool overlap = false);
  int size() const { return static_cast<int>(in_off.size()); }
};

// The slot tables of every block shape of a plan: a full block, the last row block of an image
// (shorter), and the last image group (fewer images). Computed once per call.
struct SlotTables {
  SlotTable full, last_rows, last_images;
  SlotTables() = default;
  SlotTables(const Geometry& g, const Slab& s, const Blocks& b, const DstLayout& dst,
             bool overlap = false);
  const SlotTable& of(const Blocks::Block& blk, const Blocks& b) const {
    if (blk.images < b.images) return last_images;
    return blk.rows < b.rows ? last_rows : full;
  }
};

// The most dst channels a forward tile blocks; vectors_per_ocb[ocb] (ocb = 1 .. this) is how
// many pixel vectors the ISA's registers hold beside ocb channels (ukernels.h).
constexpr int kMaxForwardOcb = 8;

// The forward-form correlation cut into tasks of (block, piece of the dst channels): small
// images give few blocks, so their channels are split too. Depends on the geometry, the lanes
// and the element size only.
struct CorrelationPlan {
  Blocks blocks;
  int64_t pieces;            // each block's dst channels (depthwise: groups) split this many ways
  int64_t tasks;             // blocks.count * pieces
  int64_t grain;             // tasks per at::parallel_for grain
  int64_t groups_per_stage;  // depthwise groups staged together
  Slab slab;
  // Few blocks split into pieces would each be staged once per piece: then every block is
  // staged once, before the tasks, into one buffer they share (`block_stage` elements a block,
  // every channel), as long as that stays within a bound; otherwise each task stages its own.
  bool shared_stage;
  int64_t block_stage;
  // The weights of every tile are packed once per call, before the tasks (rather than once per
  // task and tile, which reads a large weight from memory once per block), unless the weight
  // is too large to copy within the scratch bound.
  bool pack_once;
  std::vector<int64_t> tap_off;
  SlotTables slots;
  int ocb;                   // dst channels per micro-kernel tile

  CorrelationPlan(const Geometry& g, const DstLayout& dst, int lanes, int64_t elem_bytes,
                  bool same_dtype, int min_slots, const int* vectors_per_ocb);
};

// The weight gradient: tasks own a block of the weight (output channels x input channels of
// one group, all taps) and one chunk of the blocks of the sum over (image, row). The weight
// block bounds each task's accumulators; the chunk count is fixed by the geometry (more chunks
// only when there are too few weight blocks to keep the threads busy), and chunk partials are
// added in chunk order, so the result is bitwise the same for any thread count.
struct WeightGradPlan {
  Blocks blocks;
  int64_t oc_block, ic_block;    // channels of a weight block
  int64_t oc_blocks, ic_blocks;  // weight blocks per group, along each
  int64_t weight_blocks;         // in all groups
  int64_t chunks, blocks_per_chunk;
  Slab slab;
  // Every weight block along the output channels would stage the same input rows again: when
  // all blocks' rows fit within a bound, they are staged once, before the tasks, into a buffer
  // the tasks share, `block_input` elements a block (every input channel).
  bool shared_stage;
  int64_t block_input;
  std::vector<int64_t> tap_off;
  SlotTables slots;

  WeightGradPlan(const Geometry& g, int lanes, int64_t elem_bytes, bool same_dtype);
  int64_t tasks() const { return weight_blocks * chunks; }
};

// Channels last (NHWC): a dst pixel's channels are contiguous, so vectors run along them, not
// along pixels. A tile is a few dst pixels (consecutive in raster order, across rows) x a few
// vectors of one group's dst channels; each src element is broadcast over the channel vectors
// (depthwise: a vector of src channels multiplies the same channels' taps). Nothing is staged:
// each (pixel, tap) reads the src pixel where it is, or a row of zeros where the window lies
// in the padding. No lane idles on a narrow image; only a group's last channel vector may
// have idle lanes, so this layout is taken where that wastes little (channels_last_fits).
bool channels_last_fits(const Geometry& g, int lanes);
// Whether the channels-last forward's weights, `taps` a channel pair, packed once per call
// (every group's channels padded to whole vectors), stay within the scratch bound the NCHW
// kernels keep; beyond it the NCHW kernels, which then pack per task, take the call (the
// forward and the input gradient).
bool channels_last_packs_within_bound(const Geometry& g, int64_t taps, int lanes,
                                      int64_t elem_bytes);

// How the channels-last weight packing (correlate_channels_last) reads a forward-form weight
// (`wl`, after drop_padding_taps) in whole vectors: the elements it packs for one dst channel,
// (src channel i, tap t), lie in `runs` runs of `length` contiguous elements, run r from
// r * run_stride + start (relative to the dst channel's (0, 0)); element e of run r belongs to
// packed row row0 + r * row_step + (e / minor) * major_step + (e % minor) * minor_step, the
// packed row of (i, t) being t * C_src + i. L dst channels' runs are loaded as L vectors,
// transposed in registers and stored as L vectors of dst channels. Found for the layouts the
// ops hand over: OIHW read forward (one run of C_src * taps: (i, t)), OIHW read flipped by the
// stride-1 input gradient (a run of taps per src channel, backwards), and OHWI, channels_last
// (runs of (tap, i) per kernel row). `length` 0: none of those, element by element.
struct WeightRuns {
  int64_t runs = 0, run_stride = 0, start = 0, length = 0;
  int64_t row0 = 0, row_step = 0, minor = 1, major_step = 0, minor_step = 0;
};
WeightRuns weight_runs(const Geometry& g, const WeightLayout& wl);

struct ChannelsLastPlan {
  bool depthwise;
  int lanes;
  int64_t channels;       // a group's dst channels (depthwise: all), vectorized along
  int64_t vectors;        // vectors of them
  int64_t block_vectors;  // vectors per tile; a group's last block may have fewer
  int64_t group_blocks;   // blocks per group (depthwise: in all)
  int64_t blocks;         // (group, block) pairs in all
  int64_t pixels;         // dst pixels of the batch, in raster order (n, y, x)
  int64_t chunk;          // dst pixels per task (across images, where the maps are small)
  int64_t chunks;         // in all
  int64_t pieces;         // each chunk's blocks split this many ways, for enough tasks
  int64_t tasks;          // chunks * pieces
  // Whether a tile's addresses serve every block of its piece (channels_last_block_tiles):
  // depthwise layers, and ungrouped ones whose weights (every block's) stay in L1, where
  // computing a tile's addresses costs as much as its sums.
  bool blocks_inside_tiles;

  // `elem_bytes`: of the packed weights' scalar (float for bfloat16 and float16).
  ChannelsLastPlan(const Geometry& g, int lanes, int max_vectors, int64_t elem_bytes);

  // Block u (of blocks, group by group): its first vector within the group, its vectors (a
  // group's last block may have fewer), and the lanes of its last vector that hold channels.
  int64_t first_vector(int64_t u) const { return u % group_blocks * block_vectors; }
  int vectors_of(int64_t u) const {
    return static_cast<int>(std::min(block_vectors, vectors - first_vector(u)));
  }
  int valid_lanes(int64_t u) const {
    return static_cast<int>(
        std::min<int64_t>(lanes, channels - (first_vector(u) + vectors_of(u) - 1) * lanes));
  }
};

}  // namespace cpu
}  // namespace corr2d_ext
