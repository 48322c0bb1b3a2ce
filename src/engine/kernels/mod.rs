//! The engine's hot loops: one float evaluation order, written once portably ([`scalar`]) and once per
//! instruction set (`x86_64/`: AVX2, AVX-512, AMX), each path a table of functions ([`Kernels`]) chosen
//! once per engine.
//!
//! # Data layout (owned here; [`super::weights`] converts GGUF tensors into it)
//! A weight matrix `W[N, K]` (N outputs, K inputs) is cut into blocks of [`BLOCK`] = 32 along K. Each
//! block has a scale `d`, for 4-bit types a minimum `m`, and 32 small integers `q`; the value is
//! `d*q + m`. 4-bit blocks stay packed as nibbles (half the memory traffic of decoding); 8-bit blocks
//! hold `i8`. Scales and minimums are f32 values, stored as f16 when that is exact ([`scales`]).
//!
//! The integers of each run of 8 blocks (a *group*, blocks `8g..8g+8` of a row) are stored
//! **interleaved**: the group is 8 slices of 32 bytes, slice `v` holding elements `4v..4v+4` of block
//! `l` at bytes `4l..4l+4`. Activations use the same arrangement. Why: a byte-wise product of two slices
//! followed by pairwise widening adds (`maddubs`, `madd`) leaves in 32-bit lane `l` a partial sum of
//! block `l` only, so the 8 slices add up vertically to the 8 block sums, one per lane, with no
//! horizontal additions. 4-bit groups are 128 bytes: byte `j` of 32-byte part `u` holds slice `u`'s byte
//! `j` in its low nibble and slice `u+4`'s in its high nibble.
//!
//! The blocks after the last full group of a row (the *tail*, fewer than 8) are stored block by block:
//! 8-bit blocks as 32 bytes in element order; 4-bit blocks in pairs sharing 32 bytes, byte `j` holding
//! element `j` of the even block in its low nibble and of the odd block in its high nibble (an odd last
//! block leaves the high nibbles zero). [`i8_offset`] and [`u4_offset`] locate any element.
//!
//! Activations are quantized per 32-block ([`QActs::quantize`]): `amax = max|x|`, `q = round(x*127/amax)`,
//! `da = amax/127`, and the block sum `sa = da * sum(q)` that turns the weight minimum into one product.
//!
//! # The one float order (every path does exactly these operations)
//! For output `n` and activation row `c`, with `isum_b` the exact integer dot product of block `b`:
//! ```text
//! v_b      = (dw_b * da_b) * (isum_b as f32)  [ + mw_b * sa_b   for 4-bit blocks ]
//! acc[b%8] = acc[b%8] + v_b                   (blocks in increasing order, acc starts at +0.0)
//! out      = ((acc0+acc1)+(acc2+acc3)) + ((acc4+acc5)+(acc6+acc7))          see [`tree8`]
//! ```
//! The 8 accumulators are the 8 lanes of an AVX2 register (lane = block mod 8), and the tree is what two
//! horizontal adds and one cross-half add compute. A tail of fewer than 8 blocks adds `+0.0` to the unused
//! lanes on the SIMD path, which leaves them unchanged: an accumulator that starts at `+0.0` can never
//! become `-0.0` (in round-to-nearest, `x + y` is `-0.0` only when both are `-0.0`), and `a + 0.0 == a`
//! for every other `a`. Attention dot products use the same 8 lanes over head dimensions (lane = dim
//! mod 8) and the same tree. Integer sums are exact, so their order is free.
//!
//! No fused multiply-add is used: products and sums are separate, correctly rounded operations.
//!
//! # Paths
//! A path is a [`Kernels`] table: function pointers for the product, attention, SwiGLU, activation
//! quantization and the extra operand layouts it wants, plus [`crate::arch`]'s vector math.
//! [`Kernels::for_path`] checks once that the CPU runs the path and hands out its table; the calls
//! through it then need no check and no dispatch. Per-ISA code lives in one folder per architecture
//! (`x86_64/`, whose AVX2 and AVX-512 files never import each other and share two drivers written
//! once: the product over the one integer step they do differently, the attention over a register of
//! lanes; later `aarch64/`, whose drivers would follow the same order on its own registers). Adding a path is its [`KernelPath`] variant and CPU check in [`crate::arch`], its folder
//! here with its table, and one line in the list of tables (`ALL`, below); the bitwise tests here and in
//! the engine's tests iterate over [`Kernels::available`] and hold the new path to the scalar bits.

pub mod scalar;
pub mod scales;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use half::f16;

use super::EngineError;
use crate::arch::{ArchError, VectorMath};
use layouts::{ActLayout, WeightLayout};
use scales::BlockScales;

pub use crate::arch::{KernelPath, LANES, tree8};

/// Elements per quantization block, along the input dimension.
pub const BLOCK: usize = 32;

/// The layouts a kernel path keeps beside the shared matrices, one type each on every target: AMX's tile
/// order where the x86_64 paths are built, stand-ins that hold nothing elsewhere. The shared types carry
/// their fields without a `cfg` of their own; a new path with a layout of its own adds it here.
mod layouts {
    #[cfg(target_arch = "x86_64")]
    pub use super::x86_64::amx::{AmxActs as ActLayout, AmxWeights as WeightLayout};

    /// No path of this target prepares weights, so no value exists.
    #[cfg(not(target_arch = "x86_64"))]
    #[derive(Clone, Debug)]
    pub enum WeightLayout {}

    #[cfg(not(target_arch = "x86_64"))]
    impl WeightLayout {
        pub fn size_bytes(&self) -> usize {
            match *self {}
        }
    }

    /// No path of this target prepares activations: nothing to hold or clear.
    #[cfg(not(target_arch = "x86_64"))]
    #[derive(Clone, Debug, Default)]
    pub struct ActLayout;

    #[cfg(not(target_arch = "x86_64"))]
    impl ActLayout {
        pub fn clear(&mut self) {}
    }
}

/// Every kernel table this build has, slowest first: the one line to add when a path is added.
static ALL: &[&Kernels] = &[
    &scalar::KERNELS,
    #[cfg(target_arch = "x86_64")]
    &x86_64::AVX2,
    #[cfg(target_arch = "x86_64")]
    &x86_64::AVX512,
    #[cfg(target_arch = "x86_64")]
    &x86_64::AMX,
];

/// One kernel path's implementations of the hot loops, chosen once per engine ([`Kernels::for_path`]).
///
/// Invariant: a `&Kernels` is handed out only by [`Kernels::for_path`] and [`Kernels::available`],
/// after the CPU check of its path, so every function pointer in it may be called (with the arguments
/// its safe wrapper below checks). The tables are private statics of this module and its children.
pub struct Kernels {
    path: KernelPath,
    /// [`crate::arch`]'s vector functions of the same path (the quantizer's exponentials).
    math: &'static VectorMath,
    /// See [`Kernels::matmul_rows`].
    matmul_rows: MatmulRows,
    /// See [`Kernels::attend`] (never called with no queries).
    attend: Attend,
    /// See [`Kernels::attend_q8`] (never called with no queries).
    attend_q8: AttendQ8,
    /// See [`Kernels::swiglu`].
    swiglu: Swiglu,
    /// One row of [`QActs::quantize`]: [`quantize_row`]'s contract and bits.
    quantize_row: QuantizeRow,
    /// Adds the weight layout the path wants besides the block layout ([`QMatrix::prepare_for`]).
    prepare_weights: fn(&mut QMatrix),
    /// Adds the activation layout the path wants ([`QActs::prepare_for`]).
    prepare_acts: fn(&mut QActs),
}

/// `(w, n0, n1, x, out, col0)`: the product of weight rows `n0..n1` with every activation row.
type MatmulRows = unsafe fn(&QMatrix, usize, usize, &QActs, &StridedOut, usize);
/// `(queries, keys, values, scale, scratch)`: one task of attention.
type Attend = unsafe fn(&mut [Query<'_>], &[f16], &[f16], f32, &mut AttnScratch);
/// `(queries, keys, key_scales, values, value_scales, scale, scratch)`: one task of int8 attention.
type AttendQ8 = unsafe fn(&mut [Query<'_>], &[i8], &[f32], &[i8], &[f32], f32, &mut AttnScratch);
/// `(gate, up, out)`: SwiGLU element-wise.
type Swiglu = unsafe fn(&[f32], &[f32], &mut [f32]);
/// `(x, q, d, s)`: one activation row quantized ([`quantize_row`]).
type QuantizeRow = unsafe fn(&[f32], &mut [i8], &mut [f32], &mut [f32]);

/// For paths that use the block layout only.
fn block_layout_only(_: &mut QMatrix) {}

/// For paths that use the row layout of activations only.
fn row_layout_only(_: &mut QActs) {}

/// The head size and the largest `npos` of a batch of queries (`None` for no query), checked as both
/// attention entries need: one head size, a multiple of [`LANES`], for every query and its output,
/// and at least one position in every query's view.
fn query_shape(queries: &[Query<'_>]) -> Option<(usize, usize)> {
    let hd = queries.first()?.q.len();
    assert!(hd % LANES == 0 && hd > 0);
    for q in queries {
        assert!(q.q.len() == hd && q.out.len() == hd && q.start < q.npos);
    }
    Some((hd, queries.iter().map(|q| q.npos).max().unwrap_or(0)))
}

impl Kernels {
    /// The table of `path`, if this CPU runs it: the one availability check of an engine.
    pub fn for_path(path: KernelPath) -> Result<&'static Kernels, EngineError> {
        path.check_available()?;
        let table = ALL.iter().copied().find(|k| k.path == path);
        Ok(table.ok_or(ArchError::KernelUnavailable {
            requested: path.name(),
            reason: "this build has no kernels for it",
        })?)
    }

    /// The tables of every path this CPU runs, slowest first (scalar first): what the bitwise tests
    /// iterate over.
    pub fn available() -> Vec<&'static Kernels> {
        ALL.iter().copied().filter(|k| k.path.check_available().is_ok()).collect()
    }

    /// The path these kernels implement.
    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// The vector math of the same path, for the quantizer.
    pub fn math(&self) -> &'static VectorMath {
        self.math
    }

    /// `out[c][col0 + n - n0] = W[n] . x[c]` for weight rows `n0..n1` and every activation row `c`.
    pub fn matmul_rows(&self, w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
        assert!(n0 <= n1 && n1 <= w.rows && x.cols == w.cols && x.rows <= out.rows);
        // SAFETY: the CPU runs this path (the type's invariant); the shapes are checked above.
        unsafe { (self.matmul_rows)(w, n0, n1, x, out, col0) }
    }

    /// SwiGLU: `out[i] = silu(gate[i]) * up[i]` with [`crate::arch::math::silu`]
    /// (`x / (1 + exp(-x))`), element-wise, so every path computes the same bits.
    pub fn swiglu(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        assert!(gate.len() == out.len() && up.len() == out.len());
        // SAFETY: the CPU runs this path (the type's invariant); lengths checked above.
        unsafe { (self.swiglu)(gate, up, out) }
    }

    /// Softmax attention of queries that share one key/value head of one sequence (the query heads
    /// that share it under grouped-query attention, for one or several consecutive positions). Keys
    /// are in key tiles ([`key_index`]; `keys` covers every tile that holds a position below the
    /// largest `npos`, the positions past it finite or not, never used); value `j` is
    /// `values[j*hd..][..hd]`. For each query, in this order:
    /// ```text
    /// s_j   = tree8(lanes of q . k_j) * scale                 (lane = dim mod 8, dims in order)
    /// max   = max_j s_j                                       (exact; see below)
    /// e_j   = exp(s_j - max)                                  (crate::arch::math::exp)
    /// sum   = tree8(lanes of sum_j e_j)                       (lane = j mod 8, j in order)
    /// out_d = (sum_j e_j * v_j[d], j in increasing order) / sum
    /// ```
    /// Only positions `start <= j < npos` of a query enter its sums (in particular no `0 * v_j` for
    /// other `j`, so a non-finite value outside a query's view never reaches it). The lanes are `j mod
    /// 8` of the positions as given (the caller passes key tiles from a multiple of [`KEY_TILE`] on,
    /// which keeps `j mod 8` of the absolute positions). The SIMD paths compute the scores of positions
    /// below `start` and replace them by `-inf` (so `e_j` is exactly 0 and the lane sums are those
    /// without them), and leave them out of the weighted sums.
    /// The maximum is exact whatever the order; only the sign of a zero maximum could depend on it,
    /// and `s - (+0) == s - (-0)` for every `s` except a zero `s`, whose `exp` is 1 either way.
    pub fn attend(
        &self,
        queries: &mut [Query<'_>],
        keys: &[f16],
        values: &[f16],
        scale: f32,
        scratch: &mut AttnScratch,
    ) {
        let Some((hd, maxn)) = query_shape(queries) else {
            return;
        };
        assert!(keys.len() >= maxn.div_ceil(KEY_TILE) * KEY_TILE * hd && values.len() >= maxn * hd);
        // SAFETY: the CPU runs this path (the type's invariant); bounds checked above.
        unsafe { (self.attend)(queries, keys, values, scale, scratch) }
    }

    /// Softmax attention over int8 keys and values (engine version 2), with the queries, windows and
    /// lanes of [`Kernels::attend`]. Key `j` is `key_scales[j] * k_j` with `k_j` in key tiles of
    /// int8 ([`key_q8_index`]; `keys` covers every tile that holds a position below the largest
    /// `npos`, the bytes past it never used); value `j` is `value_scales[j] * values[j*hd..][..hd]`;
    /// both scale slices hold at least the largest `npos` entries (none past it is read). For each
    /// query, in this order:
    /// ```text
    /// (qi, sq) = quantize_vector(q)                             (hd int8 and their scale)
    /// isum_j   = sum_d qi[d] * k_j[d]                           (exact i32; order free)
    /// s_j      = ((sq * ks_j) * (isum_j as f32)) * scale        (three f32 multiplications, in order)
    /// max      = max_j s_j                                      (exact)
    /// e_j      = exp(s_j - max)                                 (crate::arch::math::exp)
    /// sum      = tree8(lanes of sum_j e_j)                      (lane = j mod 8, j in order)
    /// w_j      = e_j * vs_j                                     (one f32 multiplication)
    /// total    = tree8(lanes of sum_j w_j)                      (lane = j mod 8, j in order)
    /// k        = 32767 / total
    /// wq_j     = clamp(round_to_i32(w_j * k), 0, 32767)         (all 0 if total is 0 or k not finite)
    /// acc_d    = sum_j wq_j * v_j[d]                            (exact i32; order free)
    /// out_d    = (acc_d as f32) * ((total / 32767) / sum)
    /// ```
    /// No fused multiply-add. `isum_j` is exact in i32 (at most `hd * 128 * 127`) and converts to f32
    /// exactly for `hd` up to 1032. The weights are 15-bit integers of the value mass (`sum_j wq_j` is
    /// about 32767 plus half a unit per position, so `acc_d` stays far inside i32 for any context), so
    /// the weighted sums are exact integer products too, in any order: measured, they cost 0.03% of
    /// the bits of f32 weighted sums. Positions before a query's `start` get `s_j = -inf` (`e_j = 0`)
    /// and stay out of the weighted sums, and positions from its `npos` on are not seen, as in
    /// [`Kernels::attend`], so a non-finite scale outside a query's view never reaches it. The
    /// queries' int8 vectors are [`quantize_vector`] itself on every path.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_q8(
        &self,
        queries: &mut [Query<'_>],
        keys: &[i8],
        key_scales: &[f32],
        values: &[i8],
        value_scales: &[f32],
        scale: f32,
        scratch: &mut AttnScratch,
    ) {
        let Some((hd, maxn)) = query_shape(queries) else {
            return;
        };
        assert!(keys.len() >= maxn.div_ceil(KEY_TILE) * KEY_TILE * hd && key_scales.len() >= maxn);
        assert!(values.len() >= maxn * hd && value_scales.len() >= maxn);
        // SAFETY: the CPU runs this path (the type's invariant); bounds checked above.
        unsafe { (self.attend_q8)(queries, keys, key_scales, values, value_scales, scale, scratch) }
    }

    /// `out[i] = crate::arch::math::exp(x[i] - shift)` for every `i` ([`VectorMath::exp_shifted`]).
    pub fn exp_shifted(&self, x: &[f32], shift: f32, out: &mut [f32]) {
        self.math.exp_shifted(x, shift, out)
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Kernels").field(&self.path).finish()
    }
}

/// How the 32 integers of a weight block are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// 4-bit unsigned values 0..=15 packed as nibbles, with scale and minimum: `d*q + m`.
    U4,
    /// 8-bit signed values, with scale only: `d*q`.
    I8,
}

/// A weight matrix `[rows = outputs][cols = inputs]` in the engine's block layout (see the module docs).
#[derive(Clone, Debug)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    /// Blocks per row: `cols / BLOCK` (cols is always a multiple of [`BLOCK`]).
    blocks: usize,
    kind: WeightKind,
    /// `rows * blocks` scales, row-major, and as many minimums for [`WeightKind::U4`] (none for
    /// [`WeightKind::I8`]).
    scales: BlockScales,
    /// Per row, in the layout of the module docs: U4 nibbles, or I8 values as their bits.
    quants: Vec<u8>,
    /// The same integers in tile order, for the AMX path ([`QMatrix::prepare_for`]). (State of one
    /// path in the shared type: the tables reach it as descendants of this module.)
    amx: Option<WeightLayout>,
}

impl QMatrix {
    /// A 4-bit matrix from its parts. `nibbles` holds 16 bytes per block in the ggml order (byte `j`:
    /// element `j` in the low nibble, element `j+16` in the high nibble); they are repacked into the
    /// paired layout of the module docs.
    pub fn from_u4(
        rows: usize,
        cols: usize,
        nibbles: Vec<u8>,
        scale: Vec<f32>,
        min: Vec<f32>,
    ) -> Result<Self, EngineError> {
        let blocks = check_cols(cols)?;
        check_len("4-bit weight bytes", nibbles.len(), rows * blocks * BLOCK / 2)?;
        check_len("4-bit weight scales", scale.len(), rows * blocks)?;
        check_len("4-bit weight minimums", min.len(), rows * blocks)?;
        let row_bytes = u4_row_bytes(blocks);
        let mut quants = vec![0u8; rows * row_bytes];
        for (i, src) in nibbles.chunks_exact(BLOCK / 2).enumerate() {
            let (r, b) = (i / blocks, i % blocks);
            let row = &mut quants[r * row_bytes..(r + 1) * row_bytes];
            for (j, &byte) in src.iter().enumerate() {
                for (e, q) in [(j, byte & 15), (j + BLOCK / 2, byte >> 4)] {
                    let (at, shift) = u4_offset(blocks, b, e);
                    row[at] |= q << shift;
                }
            }
        }
        Ok(QMatrix {
            rows,
            cols,
            blocks,
            kind: WeightKind::U4,
            scales: BlockScales::new(scale, min),
            quants,
            amx: None,
        })
    }

    /// An 8-bit matrix from its parts (`values` row-major in element order).
    pub fn from_i8(rows: usize, cols: usize, values: Vec<i8>, scale: Vec<f32>) -> Result<Self, EngineError> {
        let blocks = check_cols(cols)?;
        check_len("8-bit weight values", values.len(), rows * blocks * BLOCK)?;
        check_len("8-bit weight scales", scale.len(), rows * blocks)?;
        let row_bytes = blocks * BLOCK;
        let mut quants = vec![0u8; rows * row_bytes];
        for (i, &v) in values.iter().enumerate() {
            let (r, k) = (i / row_bytes, i % row_bytes);
            quants[r * row_bytes + i8_offset(blocks, k / BLOCK, k % BLOCK)] = v as u8;
        }
        Ok(QMatrix {
            rows,
            cols,
            blocks,
            kind: WeightKind::I8,
            scales: BlockScales::new(scale, Vec::new()),
            quants,
            amx: None,
        })
    }

    /// Quantizes f32 weights `[rows][cols]` to 8-bit blocks with the engine's own fixed rule (the same as
    /// for activations): lossy, but the same bits on every machine. Used for weight types that have no
    /// exact integer form here (Q5, Q6_K, F16, F32, ...).
    pub fn quantize_i8(rows: usize, cols: usize, values: &[f32]) -> Result<Self, EngineError> {
        let blocks = check_cols(cols)?;
        check_len("f32 weights", values.len(), rows * cols)?;
        let mut q = vec![0i8; rows * cols];
        let mut scale = vec![0f32; rows * blocks];
        for (i, (src, dst)) in values.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).enumerate() {
            let (d, _) = quantize_block(src, dst);
            scale[i] = d;
        }
        QMatrix::from_i8(rows, cols, q, scale)
    }

    /// Stacks matrices with the same kind and width on top of each other (row concatenation). Each
    /// output row keeps exactly its own arithmetic, so fusing Q, K and V (or gate and up) into one product
    /// changes no bit; it only shares one quantization of the input and one parallel launch.
    pub fn concat_rows(parts: &[QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.kind != first.kind || p.cols != first.cols) {
            return None;
        }
        let scales: Vec<&BlockScales> = parts.iter().map(|p| &p.scales).collect();
        let mut out = QMatrix {
            rows: 0,
            cols: first.cols,
            blocks: first.blocks,
            kind: first.kind,
            scales: BlockScales::concat(&scales),
            quants: Vec::new(),
            amx: None,
        };
        for p in parts {
            out.rows += p.rows;
            out.quants.extend_from_slice(&p.quants);
        }
        Some(out)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn kind(&self) -> WeightKind {
        self.kind
    }

    /// Bytes of weight data (for reports).
    pub fn size_bytes(&self) -> usize {
        let tiles = self.amx.as_ref().map_or(0, WeightLayout::size_bytes);
        self.quants.len() + self.scales.size_bytes() + tiles
    }

    /// Adds the layout `kernels` wants besides the block layout (tile order on the AMX path).
    pub fn prepare_for(&mut self, kernels: &Kernels) {
        (kernels.prepare_weights)(self)
    }

    /// Writes row `r` as f32: `d*q + m` (or `d*q`), one multiply and one add per element. For GGUF types
    /// converted exactly (Q4_0, Q4_1, Q8_0, Q4_K) this is exactly the file's dequantized value.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows && out.len() == self.cols);
        let q = self.row_quants(r);
        for b in 0..self.blocks {
            let d = self.scales.scale(r * self.blocks + b);
            let dst = &mut out[b * BLOCK..(b + 1) * BLOCK];
            match self.kind {
                WeightKind::U4 => {
                    let m = self.scales.min(r * self.blocks + b);
                    for (e, x) in dst.iter_mut().enumerate() {
                        let (at, shift) = u4_offset(self.blocks, b, e);
                        *x = d * ((q[at] >> shift) & 15) as f32 + m;
                    }
                }
                WeightKind::I8 => {
                    for (e, x) in dst.iter_mut().enumerate() {
                        *x = d * (q[i8_offset(self.blocks, b, e)] as i8) as f32;
                    }
                }
            }
        }
    }

    /// Quantized nibbles or i8 bits of row `r`.
    #[inline(always)]
    pub(crate) fn row_quants(&self, r: usize) -> &[u8] {
        let per_row = match self.kind {
            WeightKind::U4 => u4_row_bytes(self.blocks),
            WeightKind::I8 => self.blocks * BLOCK,
        };
        &self.quants[r * per_row..(r + 1) * per_row]
    }

    /// The block scales and minimums, in their stored type.
    pub fn scales(&self) -> &BlockScales {
        &self.scales
    }

    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }
}

fn check_cols(cols: usize) -> Result<usize, EngineError> {
    if cols == 0 || !cols.is_multiple_of(BLOCK) {
        return Err(EngineError::UnsupportedShape {
            what: format!("input dimension {cols} is not a positive multiple of {BLOCK}"),
        });
    }
    Ok(cols / BLOCK)
}

fn check_len(what: &'static str, seen: usize, expected: usize) -> Result<(), EngineError> {
    if seen != expected {
        return Err(EngineError::LengthMismatch { what, seen, expected });
    }
    Ok(())
}

/// Blocks per interleaved group (see the module docs).
pub const GROUP: usize = 8;

/// Byte offset, within a row of `blocks` 8-bit blocks (weights or activations), of element `e` of
/// block `b` (layout in the module docs).
#[inline(always)]
pub fn i8_offset(blocks: usize, b: usize, e: usize) -> usize {
    let full = blocks / GROUP * GROUP;
    if b < full {
        let (g, l) = (b / GROUP, b % GROUP);
        g * GROUP * BLOCK + (e / 4) * BLOCK + l * 4 + e % 4
    } else {
        b * BLOCK + e
    }
}

/// Byte offset and nibble shift (0 or 4), within a row of `blocks` 4-bit blocks, of element `e` of
/// block `b` (layout in the module docs).
#[inline(always)]
pub fn u4_offset(blocks: usize, b: usize, e: usize) -> (usize, u32) {
    let full = blocks / GROUP * GROUP;
    if b < full {
        let (g, l, v) = (b / GROUP, b % GROUP, e / 4);
        let shift = if v >= 4 { 4 } else { 0 };
        (g * GROUP * BLOCK / 2 + (v % 4) * BLOCK + l * 4 + e % 4, shift)
    } else {
        let t = b - full;
        (full * BLOCK / 2 + (t / 2) * BLOCK + e, 4 * (t % 2) as u32)
    }
}

/// Bytes of one row of 4-bit blocks.
fn u4_row_bytes(blocks: usize) -> usize {
    let full = blocks / GROUP * GROUP;
    full * BLOCK / 2 + (blocks - full).div_ceil(2) * BLOCK
}

/// Quantizes one block of 32 floats to int8; returns `(scale, integer sum)`: [`quantize_vector`]'s
/// rule over the block, and the sum of the integers.
#[inline]
pub fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    debug_assert!(x.len() == BLOCK && q.len() == BLOCK);
    let scale = quantize_vector(x, q);
    (scale, q.iter().map(|&v| v as i32).sum())
}

/// Quantizes a vector of any length to int8 with one scale, returned: the engine's one quantization
/// rule (activation blocks through [`quantize_block`], attention queries, and int8 keys and values
/// per position and head).
///
/// `amax = max|x|` (NaN elements are skipped); a vector whose `127/amax` is not finite (all zero, or
/// so tiny that the reciprocal overflows) becomes all zero with scale 0. Otherwise
/// `q = round_to_i32(x * (127/amax))` ([`crate::arch::math::round_to_i32`]) clamped to [-127, 127]
/// (the clamp only catches rounding at the edge) and the scale is `amax/127`.
#[inline]
pub fn quantize_vector(x: &[f32], q: &mut [i8]) -> f32 {
    assert_eq!(x.len(), q.len());
    let mut amax = 0f32;
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
        }
    }
    let id = 127.0 / amax;
    if amax == 0.0 || !id.is_finite() {
        q.fill(0);
        return 0.0;
    }
    for (dst, &v) in q.iter_mut().zip(x) {
        *dst = crate::arch::math::round_to_i32(v * id).clamp(-127, 127) as i8;
    }
    amax / 127.0
}

/// Quantizes one activation row `x` (a multiple of [`BLOCK`] long) into `q` in the row layout of the
/// module docs, with each block's scale in `d` and `scale * (sum of q)` in `s`: the reference for
/// [`QActs::quantize`] on every path.
pub fn quantize_row(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.len() / BLOCK;
    assert!(x.len() == blocks * BLOCK && q.len() == x.len() && d.len() == blocks && s.len() == blocks);
    let mut block = [0i8; BLOCK];
    for (b, ((src, d), s)) in x.chunks_exact(BLOCK).zip(d.iter_mut()).zip(s.iter_mut()).enumerate() {
        let (scale, sum) = quantize_block(src, &mut block);
        *d = scale;
        *s = scale * sum as f32;
        if b < blocks / GROUP * GROUP {
            // Interleaved group: slice v holds elements 4v..4v+4 at bytes 4l..4l+4.
            let base = b / GROUP * GROUP * BLOCK + (b % GROUP) * 4;
            for (v, four) in block.chunks_exact(4).enumerate() {
                q[base + v * BLOCK..base + v * BLOCK + 4].copy_from_slice(four);
            }
        } else {
            q[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&block);
        }
    }
}

/// One row's input and outputs in [`QActs::quantize`]: (x, q), (d, s).
type RowParts<'a> = ((&'a [f32], &'a mut [i8]), (&'a mut [f32], &'a mut [f32]));

/// A batch of activation rows quantized per 32-block to int8. Reused between calls to avoid allocation.
#[derive(Clone, Debug, Default)]
pub struct QActs {
    rows: usize,
    cols: usize,
    blocks: usize,
    /// `rows * cols` int8 values, each row in the layout of the module docs (and stale bytes after
    /// them: buffers only grow).
    q: Vec<i8>,
    /// `rows * blocks` scales `da` (then stale values).
    d: Vec<f32>,
    /// `rows * blocks` products `da * (sum of the block's q)`, for the weight minimum term (then stale
    /// values).
    s: Vec<f32>,
    /// The rows in tile order when prepared for the AMX path ([`QActs::prepare_for`]).
    amx: ActLayout,
}

impl QActs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x = [rows][cols]` (see [`quantize_block`]) with `kernels`; `cols` must be a multiple of
    /// [`BLOCK`]. With `parallel`, rows are spread over the current rayon pool (rows are independent, so
    /// the result is the same). Every path gives the same bits.
    pub fn quantize(&mut self, kernels: &Kernels, x: &[f32], rows: usize, cols: usize, parallel: bool) {
        assert!(cols.is_multiple_of(BLOCK) && x.len() == rows * cols);
        let blocks = cols / BLOCK;
        self.rows = rows;
        self.cols = cols;
        self.blocks = blocks;
        self.amx.clear();
        // The buffers only grow: the widths alternate (model width, MLP width) many times per forward
        // pass, and resizing down and up again would zero the regrown part each time. Only the first
        // `rows` rows of the current width are meaningful.
        if self.q.len() < rows * cols {
            self.q.resize(rows * cols, 0);
        }
        if self.d.len() < rows * blocks {
            self.d.resize(rows * blocks, 0.0);
            self.s.resize(rows * blocks, 0.0);
        }
        let (q_all, d_all, s_all) =
            (&mut self.q[..rows * cols], &mut self.d[..rows * blocks], &mut self.s[..rows * blocks]);
        let quantize_row = kernels.quantize_row;
        let one_row = |((x, q), (d, s)): RowParts<'_>| {
            // SAFETY: the CPU runs the path (the invariant of `Kernels`); the slices are one row each,
            // of the lengths `quantize_row` asserts.
            unsafe { quantize_row(x, q, d, s) }
        };
        if parallel {
            use rayon::prelude::*;
            x.par_chunks_exact(cols)
                .zip(q_all.par_chunks_exact_mut(cols))
                .zip(d_all.par_chunks_exact_mut(blocks).zip(s_all.par_chunks_exact_mut(blocks)))
                .for_each(one_row);
        } else {
            x.chunks_exact(cols)
                .zip(q_all.chunks_exact_mut(cols))
                .zip(d_all.chunks_exact_mut(blocks).zip(s_all.chunks_exact_mut(blocks)))
                .for_each(one_row);
        }
    }

    /// Adds the layout `kernels` wants for these rows (tile order on the AMX path, for batches large
    /// enough to fill tiles). Call after [`QActs::quantize`], which drops it.
    pub fn prepare_for(&mut self, kernels: &Kernels) {
        (kernels.prepare_acts)(self)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pointers to the int8 values, scales and block sums of row `c` and all rows after it (whole-buffer
    /// provenance, for kernels that step from row to row).
    #[inline(always)]
    pub(crate) fn rows_from(&self, c: usize) -> (*const i8, *const f32, *const f32) {
        assert!(c < self.rows);
        (
            self.q[c * self.cols..].as_ptr(),
            self.d[c * self.blocks..].as_ptr(),
            self.s[c * self.blocks..].as_ptr(),
        )
    }

    #[inline(always)]
    pub(crate) fn row_q(&self, c: usize) -> &[i8] {
        &self.q[c * self.cols..(c + 1) * self.cols]
    }

    #[inline(always)]
    pub(crate) fn row_d(&self, c: usize) -> &[f32] {
        &self.d[c * self.blocks..(c + 1) * self.blocks]
    }

    #[inline(always)]
    pub(crate) fn row_s(&self, c: usize) -> &[f32] {
        &self.s[c * self.blocks..(c + 1) * self.blocks]
    }
}

/// A row-major f32 output `[rows][stride]` shared by the tasks of one parallel product, each of which
/// writes a disjoint set of columns.
///
/// Invariant (upheld by the constructor's caller): while a `StridedOut` is alive, nothing else reads or
/// writes the memory, and no two threads write the same `(row, col)`.
#[derive(Clone, Copy)]
pub struct StridedOut {
    ptr: *mut f32,
    rows: usize,
    stride: usize,
}

// SAFETY: writers touch disjoint elements (the type's invariant), so sharing the pointer is sound.
unsafe impl Send for StridedOut {}
unsafe impl Sync for StridedOut {}

impl StridedOut {
    /// # Safety
    /// `out` must outlive every use, and concurrent users must write disjoint `(row, col)` pairs.
    pub unsafe fn new(out: &mut [f32], rows: usize, stride: usize) -> Self {
        assert!(out.len() >= rows * stride);
        StridedOut { ptr: out.as_mut_ptr(), rows, stride }
    }

    #[inline(always)]
    pub fn set(&self, row: usize, col: usize, v: f32) {
        assert!(row < self.rows && col < self.stride);
        // SAFETY: in bounds (checked above); exclusive per the type's invariant.
        unsafe { *self.ptr.add(row * self.stride + col) = v }
    }

    /// Elements `col..col+len` of `row` as a slice.
    ///
    /// # Safety
    /// No other live reference (slice or [`StridedOut::set`]) may touch these elements.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, row: usize, col: usize, len: usize) -> &mut [f32] {
        assert!(row < self.rows && col + len <= self.stride);
        // SAFETY: in bounds (checked above); exclusive per the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(row * self.stride + col), len) }
    }
}

/// One attention query: its vector (one head), the cache positions it sees, `start..npos` (causal:
/// `npos` is its own position + 1; `start` is 0 for global attention and the first position inside
/// the window of a sliding-window layer), and where its output goes.
pub struct Query<'a> {
    pub q: &'a [f32],
    /// First position the query attends; `start < npos`.
    pub start: usize,
    pub npos: usize,
    pub out: &'a mut [f32],
}

/// Buffers of [`Kernels::attend`] and [`Kernels::attend_q8`], reused between calls.
#[derive(Default, Debug)]
pub struct AttnScratch {
    /// `queries x padded npos` scores, then softmax numerators (and for int8 values their products
    /// with the value scales).
    pub(crate) scores: Vec<f32>,
    /// Per query: the sum of its softmax numerators.
    pub(crate) sums: Vec<f32>,
    /// [`Kernels::attend_q8`]: the queries quantized, `hd` int8 each.
    pub(crate) q8: Vec<i8>,
    /// [`Kernels::attend_q8`] on the SIMD paths: the queries' scales.
    pub(crate) q8_scales: Vec<f32>,
    /// [`Kernels::attend_q8`]: each query's integer weights `wq_j`, zero outside its view.
    pub(crate) wq: Vec<i16>,
}

/// The integer weights of one query's weighted sum ([`Kernels::attend_q8`]): `w[j]` for the positions
/// `start..npos` it sees (`e_j * vs_j`, finite and at least +0), their total (lanes `j mod 8`, `j` in
/// increasing order, reduced by [`tree8`]) and `wq[j]` for every `j < wq.len()` (zero outside the
/// view); returns the factor `(total / 32767) / sum` that turns the integer sums into the output.
pub fn weights_q8(w: &[f32], start: usize, npos: usize, sum: f32, wq: &mut [i16]) -> f32 {
    let mut lanes = [0f32; LANES];
    for j in start..npos {
        lanes[j % LANES] += w[j];
    }
    let total = tree8(lanes);
    let k = Q8_WEIGHT / total;
    wq.fill(0);
    if total > 0.0 && k.is_finite() {
        for j in start..npos {
            wq[j] = crate::arch::math::round_to_i32(w[j] * k).clamp(0, Q8_WEIGHT as i32) as i16;
        }
    }
    (total / Q8_WEIGHT) / sum
}

/// The integer weights' total mass in [`Kernels::attend_q8`]: the largest i16.
pub const Q8_WEIGHT: f32 = 32767.0;

/// Positions per key tile: keys are stored transposed in tiles of this many positions (see
/// [`key_index`]), so that one SIMD load holds one dimension of 16 (or 8) consecutive keys and the
/// scores of a tile add up vertically, with no horizontal reduction per key.
pub const KEY_TILE: usize = 16;

/// Index of dimension `d` of key `j` in one head's keys (`hd` dimensions): tile `j / 16` holds `16 * hd`
/// values, dimension-major (`d * 16 + j % 16`). Values stay position-major (`j * hd + d`): the weighted
/// sum runs over dimensions in the lanes.
#[inline(always)]
pub fn key_index(hd: usize, j: usize, d: usize) -> usize {
    (j / KEY_TILE) * KEY_TILE * hd + d * KEY_TILE + j % KEY_TILE
}

/// Dimensions per key group of int8 keys ([`key_q8_index`]): one 32-bit lane holds one position's 4.
pub const KEY_GROUP: usize = 4;

/// Index of dimension `d` of int8 key `j` in one head's keys (`hd` dimensions, a multiple of
/// [`KEY_GROUP`]): tiles of [`KEY_TILE`] positions (`16 * hd` bytes), inside a tile the dimensions in
/// groups of 4 (`64` bytes each), and inside a group position-major, the 4 bytes of one position
/// adjacent. So 32 bytes hold 4 dimensions of 8 consecutive positions, one 32-bit lane per position:
/// a byte-wise product with a query's 4 dimensions broadcast to every lane, summed pairwise twice
/// (`maddubs`, `madd`), leaves a partial dot product of one position in each lane, and the groups add
/// up vertically. Key scales are `key_scales[j]`; values stay position-major (`j * hd + d`) with
/// `value_scales[j]`.
#[inline(always)]
pub fn key_q8_index(hd: usize, j: usize, d: usize) -> usize {
    (j / KEY_TILE) * KEY_TILE * hd
        + (d / KEY_GROUP) * (KEY_TILE * KEY_GROUP)
        + (j % KEY_TILE) * KEY_GROUP
        + d % KEY_GROUP
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SplitMix64;

    /// Random weights; with `half`, scales and minimums that are f16 values (as in Q4_1 or Q8_0 files,
    /// stored as f16), else ones that are not (stored as f32).
    fn random_matrix(
        rng: &mut SplitMix64,
        kind: WeightKind,
        rows: usize,
        cols: usize,
        half: bool,
    ) -> QMatrix {
        let blocks = rows * cols / BLOCK;
        let mut value = |range: f32| {
            let v = rng.next_f32() * range;
            if half { f16::from_f32(v).to_f32() } else { v }
        };
        // One value f16 cannot hold keeps the whole matrix f32.
        let mut scale: Vec<f32> = (0..blocks).map(|_| value(0.01)).collect();
        if !half {
            scale[0] = 0.01 + f32::EPSILON;
        }
        let w = match kind {
            WeightKind::U4 => {
                let min = (0..blocks).map(|_| value(0.08)).collect();
                let nib = (0..blocks * 16).map(|_| rng.next_u32() as u8).collect();
                QMatrix::from_u4(rows, cols, nib, scale, min).unwrap()
            }
            WeightKind::I8 => {
                // Include -128, which a GGUF Q8_0 block may contain.
                let q = (0..blocks * BLOCK).map(|_| rng.next_u32() as u8 as i8).collect();
                QMatrix::from_i8(rows, cols, q, scale).unwrap()
            }
        };
        assert_eq!(w.scales().is_half(), half);
        w
    }

    /// The portable table, the reference of every comparison.
    fn scalar() -> &'static Kernels {
        Kernels::for_path(KernelPath::Scalar).unwrap()
    }

    fn run(k: &Kernels, w: &QMatrix, x: &QActs) -> Vec<f32> {
        let (mut w, mut x) = (w.clone(), x.clone());
        w.prepare_for(k);
        x.prepare_for(k);
        let (w, x) = (&w, &x);
        let mut out = vec![f32::NAN; x.rows() * w.rows()];
        let so = unsafe { StridedOut::new(&mut out, x.rows(), w.rows()) };
        // Uneven row ranges, as the parallel split may produce.
        let mut n0 = 0;
        while n0 < w.rows() {
            let n1 = (n0 + 5).min(w.rows());
            k.matmul_rows(w, n0, n1, x, &so, n0);
            n0 = n1;
        }
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn matmul_matches_a_float_reference() {
        let mut rng = SplitMix64::new(7);
        for (kind, half) in [(WeightKind::U4, true), (WeightKind::U4, false), (WeightKind::I8, true)] {
            let (rows, cols) = (9, 96);
            let w = random_matrix(&mut rng, kind, rows, cols, half);
            let xs: Vec<f32> = (0..3 * cols).map(|_| rng.next_f32()).collect();
            let mut x = QActs::new();
            x.quantize(scalar(), &xs, 3, cols, false);
            let got = run(scalar(), &w, &x);
            let mut wrow = vec![0f32; cols];
            for n in 0..rows {
                w.dequantize_row(n, &mut wrow);
                for c in 0..3 {
                    let exact: f64 = (0..cols).map(|k| wrow[k] as f64 * xs[c * cols + k] as f64).sum();
                    let norm: f64 = (0..cols).map(|k| (wrow[k] as f64 * xs[c * cols + k] as f64).abs()).sum();
                    let err = (got[c * rows + n] as f64 - exact).abs();
                    assert!(err <= 0.02 * norm, "{kind:?} n={n} c={c}: {err} vs {norm}");
                }
            }
        }
    }

    #[test]
    fn quantize_block_edges() {
        let mut q = [0i8; BLOCK];
        assert_eq!(quantize_block(&[0.0; BLOCK], &mut q), (0.0, 0));
        assert_eq!(q, [0; BLOCK]);
        // 127/amax overflows for the tiniest subnormal: treated as zero, never inf or NaN.
        let mut tiny = [0f32; BLOCK];
        tiny[3] = f32::from_bits(1);
        assert_eq!(quantize_block(&tiny, &mut q), (0.0, 0));
        let mut x = [0f32; BLOCK];
        x[0] = -2.0;
        x[1] = 1.0;
        let (d, sum) = quantize_block(&x, &mut q);
        assert_eq!((q[0], q[1]), (-127, 64));
        assert_eq!(sum, -63);
        assert_eq!(d, 2.0 / 127.0);
    }

    #[test]
    fn quantize_vector_is_quantize_block_over_any_length() {
        let mut rng = SplitMix64::new(23);
        // 32-long inputs: the same integers and scale as quantize_block, whose sum is theirs.
        let mut inputs: Vec<Vec<f32>> =
            (0..50).map(|_| (0..BLOCK).map(|_| rng.next_f32() * 5.0).collect()).collect();
        inputs.push(vec![0.0; BLOCK]);
        inputs.push((0..BLOCK).map(|e| if e == 3 { f32::from_bits(1) } else { 0.0 }).collect());
        inputs.push((0..BLOCK).map(|e| if e == 9 { f32::NAN } else { e as f32 - 7.5 }).collect());
        inputs.push((0..BLOCK).map(|e| if e == 1 { f32::INFINITY } else { e as f32 }).collect());
        inputs.push(
            (0..BLOCK).map(|e| if e == 0 { -254.0 } else { e as f32 * (-1f32).powi(e as i32) }).collect(),
        );
        for x in &inputs {
            let (mut qb, mut qv) = ([0i8; BLOCK], [0i8; BLOCK]);
            let (d, sum) = quantize_block(x, &mut qb);
            let scale = quantize_vector(x, &mut qv);
            assert_eq!((qv, scale.to_bits()), (qb, d.to_bits()), "{x:?}");
            assert_eq!(sum, qv.iter().map(|&v| v as i32).sum::<i32>());
        }
        // Other lengths: the largest magnitude becomes +-127 and the scale is amax / 127.
        for len in [1, 7, 64, 256] {
            let mut x: Vec<f32> = (0..len).map(|_| rng.next_f32()).collect();
            x[len / 2] = -3.0;
            let mut q = vec![0i8; len];
            assert_eq!(quantize_vector(&x, &mut q), 3.0 / 127.0);
            assert_eq!(q[len / 2], -127);
            assert!(q.iter().all(|&v| v != i8::MIN));
        }
    }

    /// The SIMD paths this CPU runs, each compared with the scalar path below.
    fn simd_paths() -> Vec<&'static Kernels> {
        let paths: Vec<&Kernels> =
            Kernels::available().into_iter().filter(|k| k.path() != KernelPath::Scalar).collect();
        eprintln!("SIMD paths compared with scalar on this CPU: {paths:?}");
        paths
    }

    #[test]
    fn every_available_path_has_kernels() {
        let paths: Vec<KernelPath> = Kernels::available().iter().map(|k| k.path()).collect();
        assert_eq!(paths, KernelPath::available());
        for path in KernelPath::available() {
            let k = Kernels::for_path(path).unwrap();
            assert_eq!((k.path(), k.math().path()), (path, path));
        }
    }

    #[test]
    fn simd_matmul_is_bitwise_scalar() {
        let mut rng = SplitMix64::new(11);
        let kinds = [WeightKind::U4, WeightKind::I8];
        for (kind, half) in kinds.into_iter().flat_map(|k| [(k, true), (k, false)]) {
            // 50 weight rows: the AMX path's calls then cross weight tiles (its pipeline runs ahead).
            for (wrows, blocks) in
                [1, 3, 7, 8, 9, 16, 18, 23, 48].map(|b| (13, b)).into_iter().chain([(50, 9), (50, 18)])
            {
                let cols = blocks * BLOCK;
                let w = random_matrix(&mut rng, kind, wrows, cols, half);
                for rows in [1, 2, 3, 4, 5, 8, 9, 16, 17, 40] {
                    let mut xs: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() * 3.0).collect();
                    // A zero block and a block with huge range.
                    xs[..BLOCK].fill(0.0);
                    if cols > BLOCK {
                        xs[BLOCK] = 1e30;
                    }
                    let mut x = QActs::new();
                    x.quantize(scalar(), &xs, rows, cols, false);
                    let a = run(scalar(), &w, &x);
                    for path in simd_paths() {
                        let b = run(path, &w, &x);
                        assert_eq!(
                            bits(&a),
                            bits(&b),
                            "{path:?} {kind:?} f16={half} blocks={blocks} rows={rows}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn simd_attention_is_bitwise_scalar() {
        let mut rng = SplitMix64::new(5);
        // Short queries first, long ones first, and the shapes the engine makes: a prefill task (4
        // consecutive positions x 3 heads: queries whose last positions differ) and lone queries.
        let prefill = |p: usize| (0..12).map(|i| p + i / 3).collect::<Vec<_>>();
        let mut cases: Vec<(usize, Vec<usize>)> = vec![
            (8, vec![1, 8, 9, 30, 36, 37]),
            (16, vec![1, 8, 9, 30, 36, 37]),
            (64, vec![1, 8, 9, 30, 36, 37]),
            (64, vec![37, 36, 30, 17, 16, 1]),
            (64, prefill(34)),
            (64, prefill(1)),
            (64, vec![37]),
            (64, vec![16, 17, 5]),
            (72, vec![37, 36, 30, 17, 16, 1]),
            (128, vec![1, 8, 9, 30, 36, 37]),
            (128, vec![37, 36, 30, 17, 16, 1]),
            (128, prefill(20)),
        ];
        // Sliding windows: `starts[i]` is query i's first position (0 above). A windowed prefill task
        // (every position its own start), lone windowed queries, queries whose windows all start at
        // one position, and queries of which no position is seen by all.
        let global = |n: &[usize]| vec![0; n.len()];
        let mut starts: Vec<Vec<usize>> = cases.iter().map(|(_, n)| global(n)).collect();
        let windowed: Vec<(usize, Vec<usize>, Vec<usize>)> = vec![
            (64, prefill(40), prefill(40).iter().map(|n| n - 20).collect()),
            (256, prefill(50), prefill(50).iter().map(|n| n - 7).collect()),
            (128, vec![70], vec![33]),
            (256, vec![45, 45, 45, 45], vec![3, 3, 3, 3]),
            (16, vec![30, 31, 31], vec![29, 0, 17]),
            (64, vec![10, 40], vec![0, 35]),
            (8, vec![9, 9, 25], vec![8, 1, 24]),
        ];
        for (hd, n, st) in windowed {
            cases.push((hd, n));
            starts.push(st);
        }
        for ((hd, npos), start) in cases.into_iter().zip(starts) {
            let maxn = *npos.iter().max().unwrap();
            // Whole key tiles; positions past maxn hold values that must never matter (infinities: a
            // query that ignores a position must not even multiply by it).
            let tiles = maxn.div_ceil(KEY_TILE) * KEY_TILE;
            let mut keys: Vec<f16> = (0..tiles * hd).map(|_| f16::from_f32(rng.next_f32() * 4.0)).collect();
            let mut values: Vec<f16> = (0..maxn * hd).map(|_| f16::from_f32(rng.next_f32() * 4.0)).collect();
            for j in maxn..tiles {
                for d in 0..hd {
                    keys[key_index(hd, j, d)] = f16::INFINITY;
                }
            }
            values.extend(std::iter::repeat_n(f16::NAN, hd));
            let nq = npos.len();
            let qs: Vec<f32> = (0..nq * hd).map(|_| rng.next_f32() * 3.0).collect();
            // Every query's outputs, the keys and values given from position `base` on (a multiple of
            // KEY_TILE) and every position shifted by it, as the runtime gives a window's.
            let run = |k: &Kernels, keys: &[f16], values: &[f16], base: usize| {
                let mut outs = vec![f32::NAN; nq * hd];
                let mut queries: Vec<Query> = outs
                    .chunks_exact_mut(hd)
                    .enumerate()
                    .map(|(i, out)| Query {
                        q: &qs[i * hd..(i + 1) * hd],
                        start: start[i] - base,
                        npos: npos[i] - base,
                        out,
                    })
                    .collect();
                let mut scratch = AttnScratch::default();
                k.attend(&mut queries, &keys[base * hd..], &values[base * hd..], 0.125, &mut scratch);
                drop(queries);
                outs
            };
            let a = run(scalar(), &keys, &values, 0);
            assert!(a.iter().all(|x| x.is_finite()));
            for path in simd_paths() {
                assert_eq!(
                    bits(&a),
                    bits(&run(path, &keys, &values, 0)),
                    "{path:?} attention hd={hd} npos={npos:?}"
                );
            }
            // A query that sees one position copies that value exactly.
            for (i, (&s, &n)) in start.iter().zip(&npos).enumerate() {
                if n - s == 1 {
                    let v: Vec<f32> = values[s * hd..(s + 1) * hd].iter().map(|v| v.to_f32()).collect();
                    assert_eq!(bits(&a[i * hd..(i + 1) * hd]), bits(&v), "query {i} sees only position {s}");
                }
            }
            // Infinite keys and values just before a window: the queries whose window starts after them
            // keep their exact results on every path (they never even multiply by them).
            let first = *start.iter().max().unwrap();
            if first > 0 {
                let (mut keys_inf, mut values_inf) = (keys.clone(), values.clone());
                for d in 0..hd {
                    keys_inf[key_index(hd, first - 1, d)] = f16::INFINITY;
                }
                values_inf[(first - 1) * hd + 1] = f16::NAN;
                for path in Kernels::available() {
                    let outs = run(path, &keys_inf, &values_inf, 0);
                    for (i, (&s, &n)) in start.iter().zip(&npos).enumerate() {
                        let (got, want) = (&outs[i * hd..(i + 1) * hd], &a[i * hd..(i + 1) * hd]);
                        if s >= first || n < first {
                            assert_eq!(
                                bits(got),
                                bits(want),
                                "{path:?} query {i} saw position {}",
                                first - 1
                            );
                        } else {
                            assert!(!got[1].is_finite(), "{path:?} query {i} missed position {}", first - 1);
                        }
                    }
                }
            }
            // Key tiles from a later tile on give the same results, positions shifted (the runtime
            // passes a window's keys from the tile that holds its start).
            let min_start = *start.iter().min().unwrap();
            if min_start >= KEY_TILE {
                let base = min_start / KEY_TILE * KEY_TILE;
                for path in Kernels::available() {
                    let outs = run(path, &keys, &values, base);
                    assert_eq!(bits(&outs), bits(&a), "{path:?}: keys from position {base} on");
                }
            }
            // An infinite value at the last position: the queries that do not see it keep their exact
            // results on every path.
            let last = maxn - 1;
            values[last * hd + 3] = f16::INFINITY;
            for path in Kernels::available() {
                let b = run(path, &keys, &values, 0);
                for (i, &n) in npos.iter().enumerate() {
                    let (got, want) = (&b[i * hd..(i + 1) * hd], &a[i * hd..(i + 1) * hd]);
                    if n <= last {
                        assert_eq!(
                            bits(got),
                            bits(want),
                            "{path:?} query {i} of {npos:?} saw position {last}"
                        );
                    } else {
                        assert!(!got[3].is_finite(), "{path:?} query {i} of {npos:?} missed position {last}");
                    }
                }
            }
        }
    }

    #[test]
    fn key_q8_index_is_a_bijection_with_4_dims_of_a_position_adjacent() {
        for hd in [4, 8, 64, 256] {
            let tiles = 3;
            let mut seen: Vec<usize> = Vec::new();
            for j in 0..tiles * KEY_TILE {
                for d in 0..hd {
                    let at = key_q8_index(hd, j, d);
                    seen.push(at);
                    // One position's group of 4 dimensions: 4 adjacent bytes, 4-aligned.
                    assert_eq!(at, key_q8_index(hd, j, d / KEY_GROUP * KEY_GROUP) + d % KEY_GROUP);
                    assert_eq!(at % KEY_GROUP, d % KEY_GROUP);
                    // The next position of the tile: the next 4 bytes (8 positions in 32 bytes).
                    if (j + 1) % KEY_TILE != 0 {
                        assert_eq!(key_q8_index(hd, j + 1, d), at + KEY_GROUP);
                    }
                    // A tile holds its 16 positions' bytes only.
                    assert_eq!(at / (KEY_TILE * hd), j / KEY_TILE);
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..tiles * KEY_TILE * hd).collect::<Vec<_>>(), "hd={hd}");
        }
    }

    /// One query per `hd` of `qs` (`hd` = the length of each output), query `i` seeing positions
    /// `start[i]..npos[i]` shifted down by `base`.
    fn queries_of<'a>(
        qs: &'a [f32],
        start: &[usize],
        npos: &[usize],
        base: usize,
        outs: &'a mut [f32],
    ) -> Vec<Query<'a>> {
        let hd = qs.len() / npos.len();
        outs.chunks_exact_mut(hd)
            .enumerate()
            .map(|(i, out)| Query {
                q: &qs[i * hd..(i + 1) * hd],
                start: start[i] - base,
                npos: npos[i] - base,
                out,
            })
            .collect()
    }

    /// Int8 keys and values of `n` positions of `hd` dimensions from f32 rows (`[j][d]`), quantized per
    /// position with [`quantize_vector`]: (keys in key tiles, key scales, values, value scales).
    fn quantize_kv(hd: usize, n: usize, k: &[f32], v: &[f32]) -> (Vec<i8>, Vec<f32>, Vec<i8>, Vec<f32>) {
        let tiles = n.div_ceil(KEY_TILE) * KEY_TILE;
        let (mut keys, mut ks) = (vec![0i8; tiles * hd], vec![0f32; n]);
        let (mut values, mut vs) = (vec![0i8; n * hd], vec![0f32; n]);
        let mut row = vec![0i8; hd];
        for j in 0..n {
            ks[j] = quantize_vector(&k[j * hd..(j + 1) * hd], &mut row);
            for d in 0..hd {
                keys[key_q8_index(hd, j, d)] = row[d];
            }
            vs[j] = quantize_vector(&v[j * hd..(j + 1) * hd], &mut values[j * hd..(j + 1) * hd]);
        }
        (keys, ks, values, vs)
    }

    #[test]
    fn attention_q8_approximates_f16_attention_on_the_dequantized_data() {
        let mut rng = SplitMix64::new(31);
        for (hd, npos, start) in [(64, vec![50, 49, 13], vec![0, 20, 0]), (256, vec![37, 37], vec![0, 5])] {
            let n = *npos.iter().max().unwrap();
            let kf: Vec<f32> = (0..n * hd).map(|_| rng.next_f32() * 2.0).collect();
            let vf: Vec<f32> = (0..n * hd).map(|_| rng.next_f32() * 2.0).collect();
            let (keys, ks, values, vs) = quantize_kv(hd, n, &kf, &vf);
            // The same keys and values as f16: each the f16 nearest to its dequantized value.
            let tiles = n.div_ceil(KEY_TILE) * KEY_TILE;
            let mut keys16 = vec![f16::ZERO; tiles * hd];
            let mut values16 = vec![f16::ZERO; n * hd];
            for j in 0..n {
                for d in 0..hd {
                    keys16[key_index(hd, j, d)] = f16::from_f32(ks[j] * keys[key_q8_index(hd, j, d)] as f32);
                    values16[j * hd + d] = f16::from_f32(vs[j] * values[j * hd + d] as f32);
                }
            }
            let qs: Vec<f32> = (0..npos.len() * hd).map(|_| rng.next_f32() * 2.0).collect();
            let scale = 1.0 / (hd as f32).sqrt();
            let (mut a, mut b) = (vec![0f32; qs.len()], vec![0f32; qs.len()]);
            let mk = |outs| queries_of(&qs, &start, &npos, 0, outs);
            let mut scratch = AttnScratch::default();
            scalar().attend(&mut mk(&mut a), &keys16, &values16, scale, &mut scratch);
            scalar().attend_q8(&mut mk(&mut b), &keys, &ks, &values, &vs, scale, &mut scratch);
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            let size = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
            eprintln!("hd={hd}: largest difference {worst} on outputs up to {size}");
            assert!(worst <= 0.01 * size, "hd={hd}: {worst} vs {size}");
        }
    }

    #[test]
    fn simd_attention_q8_is_bitwise_scalar() {
        let mut rng = SplitMix64::new(37);
        // 1 to 7 queries: lone ones, GQA groups, prefill tiles (positions x 3 heads) whose last
        // positions differ, global and windowed (windows starting inside tiles and at tile boundaries),
        // position counts that are not multiples of 8 or 16.
        let prefill = |p: usize, nq: usize| (0..nq).map(|i| p + i / 3).collect::<Vec<_>>();
        let zeros = |n: usize| vec![0; n];
        let cases: Vec<(usize, Vec<usize>, Vec<usize>)> = vec![
            (64, vec![1], zeros(1)),
            (64, vec![37], zeros(1)),
            (256, vec![5, 9], zeros(2)),
            (64, vec![1, 8, 9], zeros(3)),
            (64, vec![16, 17, 5, 33], zeros(4)),
            (256, vec![1, 8, 9, 30, 36], zeros(5)),
            (64, vec![1, 8, 9, 30, 36, 37], zeros(6)),
            (64, vec![37, 36, 30, 17, 16, 1, 23], zeros(7)),
            (64, prefill(34, 6), zeros(6)),
            (256, prefill(1, 7), zeros(7)),
            (64, vec![300], zeros(1)),
            (64, prefill(40, 7), prefill(40, 7).iter().map(|n| n - 20).collect()),
            (256, prefill(50, 6), prefill(50, 6).iter().map(|n| n - 7).collect()),
            (64, vec![70], vec![33]),
            (256, vec![45, 45, 45, 45], vec![3, 3, 3, 3]),
            (64, vec![30, 31, 31], vec![29, 0, 17]),
            (256, vec![10, 40], vec![0, 35]),
            (64, vec![9, 9, 25], vec![8, 1, 24]),
            (64, vec![40, 41, 42, 43, 44], vec![16, 16, 16, 32, 32]),
            (256, vec![100, 101, 102], vec![32, 48, 16]),
            (64, vec![83, 83, 83, 84, 84, 84, 85], vec![64, 64, 64, 64, 64, 64, 64]),
        ];
        for (case, (hd, npos, start)) in cases.into_iter().enumerate() {
            let maxn = *npos.iter().max().unwrap();
            let tiles = maxn.div_ceil(KEY_TILE) * KEY_TILE;
            // Any int8 keys (-128 included), past maxn too (never used); some positions all 127, all
            // -127 or all -128, the products' extremes that a query of all 127 meets (pairs of
            // 127 * 127 or 128 * 127 in i16).
            let mut keys: Vec<i8> = (0..tiles * hd).map(|_| rng.next_u32() as u8 as i8).collect();
            for (j, k) in [(0, 127i8), (3, -127), (maxn - 1, 127), (maxn / 2, -128), (maxn / 3, -127)] {
                for d in 0..hd {
                    keys[key_q8_index(hd, j, d)] = k;
                }
            }
            let values: Vec<i8> = (0..maxn * hd).map(|_| rng.next_u32() as u8 as i8).collect();
            // Key scales of several sizes; value scales ordinary, large, tiny and subnormal, and zero.
            let ks: Vec<f32> = (0..maxn).map(|_| (rng.next_f32() + 1.0) * 0.02).collect();
            let vs: Vec<f32> = (0..maxn)
                .map(|j| match j % 7 {
                    2 => 3e25 * (rng.next_f32() + 1.5),
                    4 => 1e-30 * (rng.next_f32() + 1.5),
                    5 => f32::from_bits(1 + rng.next_u32() % 1000),
                    6 if j > 10 => 0.0,
                    _ => (rng.next_f32() + 1.5) * 0.01,
                })
                .collect();
            let nq = npos.len();
            let mut qs: Vec<f32> = (0..nq * hd).map(|_| rng.next_f32() * 3.0).collect();
            // A query of all zeros, and one whose int8 values are all 127.
            if nq > 1 {
                qs[hd..2 * hd].fill(0.0);
            }
            if nq > 2 || case % 2 == 0 {
                qs[..hd].fill(0.5);
            }
            let run = |k: &Kernels, keys: &[i8], ks: &[f32], values: &[i8], vs: &[f32], base: usize| {
                let mut outs = vec![f32::NAN; nq * hd];
                let mut queries = queries_of(&qs, &start, &npos, base, &mut outs);
                let mut scratch = AttnScratch::default();
                // Scales exactly maxn long: nothing past them is read.
                let (ks, vs) = (&ks[base..maxn], &vs[base..maxn]);
                k.attend_q8(
                    &mut queries,
                    &keys[base * hd..],
                    ks,
                    &values[base * hd..],
                    vs,
                    0.125,
                    &mut scratch,
                );
                drop(queries);
                outs
            };
            let a = run(scalar(), &keys, &ks, &values, &vs, 0);
            assert!(a.iter().all(|x| x.is_finite()), "case {case}");
            for path in simd_paths() {
                let b = run(path, &keys, &ks, &values, &vs, 0);
                assert_eq!(bits(&a), bits(&b), "{path:?} case {case}: hd={hd} npos={npos:?} start={start:?}");
            }
            // A query that sees one position: that value times its scale (its integer weight is the
            // whole mass, 32767, so within a few ulps; a subnormal mass whose 32767 / total overflows
            // gives weight 0, and a zero output).
            for (i, (&s, &n)) in start.iter().zip(&npos).enumerate() {
                if n - s == 1 {
                    let v: Vec<f32> =
                        values[s * hd..(s + 1) * hd].iter().map(|&v| vs[s] * v as f32).collect();
                    let got = &a[i * hd..(i + 1) * hd];
                    let overflow = !(Q8_WEIGHT / vs[s]).is_finite();
                    for (&g, &e) in got.iter().zip(&v) {
                        let expected = if overflow { 0.0 } else { e };
                        assert!(
                            (g - expected).abs() <= 1e-6 * expected.abs(),
                            "case {case}: query {i} sees only {s}: {g} against {expected}"
                        );
                    }
                }
            }
            // Non-finite scales just before a window: the queries whose window starts after them keep
            // their exact results on every path; those that see the position do not.
            let first = *start.iter().max().unwrap();
            if first > 0 {
                let (mut ks_inf, mut vs_inf) = (ks.clone(), vs.clone());
                ks_inf[first - 1] = f32::INFINITY;
                vs_inf[first - 1] = f32::NAN;
                for path in Kernels::available() {
                    let outs = run(path, &keys, &ks_inf, &values, &vs_inf, 0);
                    for (i, (&s, &n)) in start.iter().zip(&npos).enumerate() {
                        let (got, want) = (&outs[i * hd..(i + 1) * hd], &a[i * hd..(i + 1) * hd]);
                        if s >= first || n < first {
                            assert_eq!(
                                bits(got),
                                bits(want),
                                "{path:?} case {case}: query {i} saw {}",
                                first - 1
                            );
                        } else {
                            assert!(
                                got.iter().all(|x| x.is_nan()),
                                "{path:?} case {case}: query {i} missed {}",
                                first - 1
                            );
                        }
                    }
                }
            }
            // Keys from a later tile on, positions shifted: the same results.
            let min_start = *start.iter().min().unwrap();
            if min_start >= KEY_TILE {
                let base = min_start / KEY_TILE * KEY_TILE;
                for path in Kernels::available() {
                    let outs = run(path, &keys, &ks, &values, &vs, base);
                    assert_eq!(bits(&outs), bits(&a), "{path:?} case {case}: keys from position {base} on");
                }
            }
        }
    }

    #[test]
    fn activation_quantization_is_the_same_on_every_path() {
        let mut rng = SplitMix64::new(17);
        for blocks in [1, 7, 8, 9, 18, 48] {
            let cols = blocks * BLOCK;
            let rows = 5;
            let mut x: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32() * 8.0).collect();
            // Edge blocks: all zero, a lone subnormal (127/amax overflows), a NaN and an infinity among
            // ordinary values, exact halves after scaling (127 * k/254), negative zeros.
            x[..BLOCK].fill(0.0);
            if blocks > 1 {
                x[BLOCK..2 * BLOCK].fill(0.0);
                x[BLOCK + 5] = f32::from_bits(3);
            }
            if blocks > 2 {
                x[2 * BLOCK + 1] = f32::NAN;
                x[2 * BLOCK + 9] = -f32::NAN;
            }
            if blocks > 3 {
                x[3 * BLOCK + 2] = f32::INFINITY;
            }
            if blocks > 4 {
                for (e, v) in x[4 * BLOCK..5 * BLOCK].iter_mut().enumerate() {
                    *v = if e == 0 { -254.0 } else { e as f32 * if e % 2 == 0 { 1.0 } else { -1.0 } };
                }
                x[4 * BLOCK + 3] = -0.0;
            }
            let run = |k: &Kernels| {
                let mut a = QActs::new();
                a.quantize(k, &x, rows, cols, false);
                (a.q[..rows * cols].to_vec(), bits(&a.d[..rows * blocks]), bits(&a.s[..rows * blocks]))
            };
            let want = run(scalar());
            for path in simd_paths() {
                assert!(run(path) == want, "{path:?} quantizes {blocks} blocks differently");
            }
        }
    }

    #[test]
    fn simd_swiglu_is_bitwise_scalar() {
        let mut rng = SplitMix64::new(9);
        let n = 1000;
        let mut gate: Vec<f32> = (0..n).map(|_| rng.next_f32() * 30.0).collect();
        gate[..6].copy_from_slice(&[0.0, -0.0, 100.0, -100.0, 88.9, -104.0]);
        let up: Vec<f32> = (0..n).map(|_| rng.next_f32() * 3.0).collect();
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        scalar().swiglu(&gate, &up, &mut a);
        for path in simd_paths() {
            path.swiglu(&gate, &up, &mut b);
            assert_eq!(bits(&a), bits(&b), "{path:?}");
        }
    }
}
