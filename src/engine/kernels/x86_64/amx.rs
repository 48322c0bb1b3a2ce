//! The AMX path: integer block dots on Intel's tile unit (AMX-INT8), float steps on AVX-512, and the
//! same bits as every other path.
//!
//! One `tdpbusd` (4-bit weights, u8 x i8) or `tdpbssd` (8-bit weights, i8 x i8) multiplies a tile of 16
//! weight rows by a tile of 16 activation rows over one 32-element block: 256 exact block sums, where
//! [`super::avx512`] gets 8. Because every block has its own scales, the tile's K dimension is exactly
//! one block, and the sums go through the float steps of the module docs of [`crate::engine::kernels`] block by block:
//!
//! ```text
//! for lane l in 0..8, for blocks b = l, l+8, l+16, ... (increasing):
//!     v[n][c]      = (dw[n][b] * da[c][b]) * isum[n][c]   [ + mw[n][b] * sa[c][b] ]
//!     acc_l[n][c] += v[n][c]
//! out[c][n] = ((acc_0+acc_1)+(acc_2+acc_3)) + ((acc_4+acc_5)+(acc_6+acc_7))     (elementwise)
//! ```
//!
//! Lane `l`'s accumulator receives exactly the blocks `b ≡ l (mod 8)` in increasing order, as the lane
//! `b % 8` of the AVX2 register does, so taking the lanes one after another instead of side by side
//! changes no bit. One 512-bit register holds the 16 activation rows of one weight row.
//!
//! Operands are laid out for the tiles: 8-bit weights once at load ([`AmxWeights`]: per row tile and
//! block 16 rows x 32 bytes, the last tile zero-padded); 4-bit weights are not copied at all, each row
//! tile is unpacked from the block layout of [`QMatrix`] while it is in use ([`unpack_tile`]), which
//! keeps the resident memory of the AMX path within the 1 GB of 16-lane decoding; activations after each quantization
//! ([`AmxActs`], per block 8 rows of 64 bytes: four consecutive elements of each of 16 activation rows,
//! with their scales and block sums transposed). Padding rows are zero and their outputs are never
//! stored. Scales and minimums of the weights are read from the [`QMatrix`] itself.
//!
//! Linux hands the tile state to a process only on request, which the path's availability check in
//! [`crate::arch`] makes once; each call configures the tiles for its thread and releases them at the
//! end.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;

use half::f16;

use super::super::{BLOCK, GROUP, LANES, QActs, QMatrix, StridedOut, WeightKind, i8_offset, u4_offset};

/// Rows of a weight tile, and of an activation tile.
pub const TILE: usize = 16;
/// Bytes of one operand tile: 16 rows x 32 bytes (weights) or 8 rows x 64 bytes (activations).
const TILE_BYTES: usize = TILE * BLOCK;

/// A weight matrix in tile order (see the module docs).
#[derive(Clone, Debug)]
pub struct AmxWeights {
    /// Weight-row tiles: `rows.div_ceil(16)`.
    tiles: usize,
    blocks: usize,
    /// 8-bit weights: tile `t`, block `b` at `(t * blocks + b) * 512`, 16 rows x 32 bytes, element `e`
    /// of row `n` at byte `n * 32 + e`. Empty for 4-bit weights, which [`matmul_rows`] unpacks from
    /// the matrix itself, one row tile at a time, once for all activation tiles.
    data: Vec<u8>,
}

impl AmxWeights {
    pub fn new(w: &QMatrix) -> Self {
        let (rows, blocks) = (w.rows(), w.blocks());
        let tiles = rows.div_ceil(TILE);
        if w.kind() == WeightKind::U4 {
            return AmxWeights { tiles, blocks, data: Vec::new() };
        }
        let mut data = vec![0u8; tiles * blocks * TILE_BYTES];
        for n in 0..rows {
            let q = w.row_quants(n);
            let (t, r) = (n / TILE, n % TILE);
            for b in 0..blocks {
                let dst = &mut data[(t * blocks + b) * TILE_BYTES + r * BLOCK..][..BLOCK];
                for (e, d) in dst.iter_mut().enumerate() {
                    *d = q[i8_offset(blocks, b, e)];
                }
            }
        }
        AmxWeights { tiles, blocks, data }
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }
}

/// Activation rows in tile order (see the module docs), rebuilt after each quantization.
#[derive(Clone, Debug, Default)]
pub struct AmxActs {
    /// Activation-row tiles: `rows.div_ceil(16)` (0: not prepared).
    tiles: usize,
    blocks: usize,
    /// Tile `g`, block `b` at `(g * blocks + b) * 512`: byte `k * 64 + c * 4 + j` is element `4k + j`
    /// of row `16g + c` (zero for padding rows). Buffers only grow.
    q: Vec<i8>,
    /// `da` and `sa` of row `16g + c`, block `b`, at `(g * blocks + b) * 16 + c` (zero for padding).
    d: Vec<f32>,
    s: Vec<f32>,
}

impl AmxActs {
    /// Lays out the rows of `x` for the tiles.
    pub fn prepare(&mut self, x: &QActs) {
        let (rows, blocks) = (x.rows(), x.cols() / BLOCK);
        let tiles = rows.div_ceil(TILE);
        let n = tiles * blocks * TILE_BYTES;
        if self.q.len() < n {
            self.q.resize(n, 0);
            self.d.resize(tiles * blocks * TILE, 0.0);
            self.s.resize(tiles * blocks * TILE, 0.0);
        }
        (self.tiles, self.blocks) = (tiles, blocks);
        for g in 0..tiles {
            for c in 0..TILE {
                let row = g * TILE + c;
                for b in 0..blocks {
                    let base = (g * blocks + b) * TILE_BYTES + c * 4;
                    let at = (g * blocks + b) * TILE + c;
                    if row < rows {
                        let q = x.row_q(row);
                        // Elements 4k..4k+4 of a block are 4 consecutive bytes in either row layout.
                        for k in 0..BLOCK / 4 {
                            let from = i8_offset(blocks, b, 4 * k);
                            self.q[base + k * 64..][..4].copy_from_slice(&q[from..from + 4]);
                        }
                        (self.d[at], self.s[at]) = (x.row_d(row)[b], x.row_s(row)[b]);
                    } else {
                        for k in 0..BLOCK / 4 {
                            self.q[base + k * 64..][..4].fill(0);
                        }
                        (self.d[at], self.s[at]) = (0.0, 0.0);
                    }
                }
            }
        }
    }

    /// Forgets the layout (the activations it was made from changed).
    pub fn clear(&mut self) {
        self.tiles = 0;
    }

    /// Whether [`AmxActs::prepare`] laid out these activations.
    pub fn ready_for(&self, x: &QActs) -> bool {
        self.tiles == x.rows().div_ceil(TILE) && self.tiles > 0 && self.blocks * BLOCK == x.cols()
    }
}

/// The tile configuration (palette 1): two sets of three tiles, used by alternate blocks so that one
/// block's product need not wait for the previous block's store: tmm0 and tmm3 = 16 weight rows x 32
/// bytes, tmm1 and tmm4 = 8 rows x 64 bytes of activations, tmm2 and tmm5 = 16 x 16 i32 sums.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let set = [(32u16, 16u8), (64, 8), (64, 16)];
        for (t, (colsb, rows)) in set.into_iter().chain(set).enumerate() {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            c[48 + t] = rows;
        }
        TileConfig(c)
    }
}

/// 16 x 16 block sums, 64-byte aligned for the tile store and the vector loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Sums([i32; TILE * TILE]);

/// Blocks whose tile products are issued ahead of the float steps (see [`matmul_rows`]).
const AHEAD: usize = 4;
/// Sums buffers in the ring (more than [`AHEAD`], so a store never hits a buffer still to be read).
const RING: usize = 8;

thread_local! {
    /// The 4-bit weight tile unpacked to bytes, one per thread and kept between calls (it only grows),
    /// so that a call neither allocates nor zeroes it: block `b` at `b * 512`.
    static STAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Computes the exact sums of one block for a weight tile and an activation tile on tile set `SET`
/// (0: tmm0-2, 1: tmm3-5) and stores them: `sums[n][c]` at byte `n * stride + 4 * c` of `dst`.
///
/// Nothing waits for the store here: [`matmul_rows`] reads these sums only [`AHEAD`] blocks later,
/// once the store has reached the cache (a vector load right after a tile store to the same line
/// cannot be forwarded and would stall).
///
/// # Safety
/// Tiles configured by [`TileConfig`]; `wt` and `at` point to 512 readable bytes, `dst` to 16 rows of
/// 64 writable bytes, `stride` apart.
#[inline(always)]
unsafe fn block_sums<const Q4: bool, const SET: usize>(
    wt: *const u8,
    at: *const i8,
    dst: *mut i32,
    stride: usize,
) {
    macro_rules! tiles {
        ($dp:literal, $w:literal, $a:literal, $c:literal) => {
            asm!(
                concat!("tilezero ", $c),
                concat!("tileloadd ", $w, ", [{w} + {ws}*1]"),
                concat!("tileloadd ", $a, ", [{a} + {as}*1]"),
                concat!($dp, " ", $c, ", ", $w, ", ", $a),
                concat!("tilestored [{s} + {ss}*1], ", $c),
                w = in(reg) wt, ws = in(reg) BLOCK, a = in(reg) at, as = in(reg) 64usize,
                s = in(reg) dst, ss = in(reg) stride,
                options(nostack),
            )
        };
    }
    // SAFETY: the caller's bounds; the asm touches only tile registers and the named memory.
    unsafe {
        match (Q4, SET) {
            (true, 0) => tiles!("tdpbusd", "tmm0", "tmm1", "tmm2"),
            (true, _) => tiles!("tdpbusd", "tmm3", "tmm4", "tmm5"),
            (false, 0) => tiles!("tdpbssd", "tmm0", "tmm1", "tmm2"),
            (false, _) => tiles!("tdpbssd", "tmm3", "tmm4", "tmm5"),
        }
    }
}

/// Unpacks the 4-bit blocks of weight-row tile `t` of `w` (rows `16t..16t+16`, in the block layout of
/// the module docs of [`crate::engine::kernels`]) into `out`: block `b` as 512 bytes at `b * 512`, row `r`'s element `e`
/// at byte `r * 32 + e` (0..=15). Rows past the last are zero.
///
/// In a full group, part `u` (32 bytes) holds at bytes `4l..4l+4` elements `4u..4u+4` of block `l`
/// in its low nibbles and `16+4u..16+4u+4` in its high ones, so one permutation of the group's 32
/// four-byte pieces puts each block's 16 bytes together, and the two nibbles are its elements 0..16
/// and 16..32 in order. Tail blocks pair up in 32 bytes, element `e` at byte `e`.
///
/// # Safety
/// AVX-512 F and BW; `t` is a tile of `w`, `out` holds `w.blocks() * 512` bytes.
// Not inlined: once per weight tile, and inlined into the step loop it would crowd its registers.
#[inline(never)]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn unpack_tile(w: &QMatrix, t: usize, out: &mut [u8]) {
    let blocks = w.blocks();
    assert!(w.kind() == WeightKind::U4 && t * TILE < w.rows() && out.len() >= blocks * TILE_BYTES);
    let full = blocks / GROUP * GROUP;
    let mask = _mm512_set1_epi8(0x0F);
    // Output piece 4l+u (u32 units) of a group's first half (blocks 0..4) comes from part u, piece
    // l: in the pair (parts 0-1, parts 2-3) of permutex2var, index (u/2)*16 + (u%2)*8 + l.
    let index = |half: i32| {
        let i: [i32; 16] = std::array::from_fn(|p| {
            let (l, u) = (p as i32 / 4 + 4 * half, p as i32 % 4);
            (u / 2) * 16 + (u % 2) * 8 + l
        });
        // SAFETY: 16 readable i32.
        unsafe { _mm512_loadu_si512(i.as_ptr() as *const _) }
    };
    let (first, second) = (index(0), index(1));
    for r in 0..TILE {
        let n = t * TILE + r;
        let dst = |b: usize| b * TILE_BYTES + r * BLOCK;
        if n >= w.rows() {
            for b in 0..blocks {
                out[dst(b)..dst(b) + BLOCK].fill(0);
            }
            continue;
        }
        let q = w.row_quants(n);
        for g in 0..full / GROUP {
            // SAFETY: the group's 128 bytes are inside the row (full groups come first).
            let (z0, z1) = unsafe {
                let p = q[g * GROUP * BLOCK / 2..][..128].as_ptr();
                (_mm512_loadu_si512(p as *const _), _mm512_loadu_si512(p.add(64) as *const _))
            };
            for (h, idx) in [first, second].into_iter().enumerate() {
                let v = _mm512_permutex2var_epi32(z0, idx, z1);
                let mut lo = [0u8; 64];
                let mut hi = [0u8; 64];
                // SAFETY: 64 writable bytes each.
                unsafe {
                    _mm512_storeu_si512(lo.as_mut_ptr() as *mut _, _mm512_and_si512(v, mask));
                    _mm512_storeu_si512(
                        hi.as_mut_ptr() as *mut _,
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask),
                    );
                }
                for k in 0..4 {
                    let at = dst(g * GROUP + 4 * h + k);
                    out[at..at + 16].copy_from_slice(&lo[16 * k..16 * k + 16]);
                    out[at + 16..at + 32].copy_from_slice(&hi[16 * k..16 * k + 16]);
                }
            }
        }
        for b in full..blocks {
            // A tail block's element e sits at byte e of its pair's 32 bytes.
            let (at, shift) = u4_offset(blocks, b, 0);
            let src = &q[at..][..BLOCK];
            for (o, &byte) in out[dst(b)..dst(b) + BLOCK].iter_mut().zip(src) {
                *o = (byte >> shift) & 15;
            }
        }
    }
}

/// A position in the sequence of block steps of one call: pair `p` = (weight tile `t`, activation
/// tile `g`), `g` fastest; within a pair, lane `l` and block `b`, lane-major (blocks `l, l+8, ...`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Step {
    p: usize,
    t: usize,
    g: usize,
    l: usize,
    b: usize,
}

impl Step {
    fn first(t0: usize) -> Self {
        Step { p: 0, t: t0, g: 0, l: 0, b: 0 }
    }

    /// The step after this one, for `blocks` blocks per row and `gt` activation tiles.
    #[inline(always)]
    fn next(self, blocks: usize, gt: usize) -> Self {
        let mut s = self;
        s.b += LANES;
        if s.b >= blocks {
            s.l += 1;
            s.b = s.l;
            if s.l >= blocks.min(LANES) {
                (s.p, s.g, s.l, s.b) = (s.p + 1, s.g + 1, 0, 0);
                if s.g == gt {
                    (s.t, s.g) = (s.t + 1, 0);
                }
            }
        }
        s
    }
}

/// See [`crate::engine::kernels::Kernels::matmul_rows`]; `wa` and `xa` are `w` and `x` in tile order.
///
/// # Safety
/// The AMX path's CPU features and permission ([`crate::arch::KernelPath::check_available`]);
/// arguments as checked by [`crate::engine::kernels::Kernels::matmul_rows`]; `wa` built from `w`, `xa` prepared from `x`.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_rows(
    w: &QMatrix,
    wa: &AmxWeights,
    n0: usize,
    n1: usize,
    x: &QActs,
    xa: &AmxActs,
    out: &StridedOut,
    col0: usize,
) {
    if n0 >= n1 {
        return;
    }
    STAGE.with_borrow_mut(|stage| {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            match w.kind() {
                WeightKind::U4 => tiles_product::<true>(w, wa, n0, n1, x, xa, out, col0, stage),
                WeightKind::I8 => tiles_product::<false>(w, wa, n0, n1, x, xa, out, col0, stage),
            }
        }
    })
}

/// `dst[i] = src[i]` as f32 (exact), 16 at a time: the AVX-512 version of the portable
/// [`scales::widen_half`](super::super::scales::widen_half), bit for bit the same (its test compares
/// both with the definition on every f16). Called once per weight tile, inside the product, where
/// the portable one's call per 8 values would cost a few percent of it.
///
/// # Safety
/// AVX-512 F, BW and VL.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
pub(in crate::engine::kernels) unsafe fn widen_half_avx512(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let (s, d) = (src.as_ptr() as *const u16, dst.as_mut_ptr());
    let mut i = 0;
    // SAFETY: every access is to elements i..i+16 with i + 16 <= len, or masked to those below len.
    unsafe {
        while i + 16 <= src.len() {
            _mm512_storeu_ps(d.add(i), _mm512_cvtph_ps(_mm256_loadu_si256(s.add(i) as *const __m256i)));
            i += 16;
        }
        if i < src.len() {
            let m = (1u16 << (src.len() - i)) - 1;
            let v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s.add(i) as *const i16));
            _mm512_mask_storeu_ps(d.add(i), m, v);
        }
    }
}

/// [`matmul_rows`] for one weight kind (`Q4`: [`WeightKind::U4`]).
///
/// The work is a sequence of steps (see [`Step`]): pairs (weight tile, activation tile), activation
/// tiles fastest so that an unpacked 4-bit weight tile serves them all, and in each pair the blocks
/// lane by lane, so that the 16 accumulators of one lane stay in registers. Step `s` puts its block
/// sums in buffer `s % RING` of a ring; its tile instructions are issued [`AHEAD`] steps before its
/// float steps, so the vector loads never wait for a tile store that has not reached the cache (the
/// store cannot be forwarded), and the ring is small enough to stay in the L1 cache (a tile store
/// that misses it is twice as slow).
///
/// # Safety
/// As for [`matmul_rows`], with `Q4` matching `w.kind()`.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiles_product<const Q4: bool>(
    w: &QMatrix,
    wa: &AmxWeights,
    n0: usize,
    n1: usize,
    x: &QActs,
    xa: &AmxActs,
    out: &StridedOut,
    col0: usize,
    stage: &mut Vec<u8>,
) {
    let (blocks, rows, gt) = (wa.blocks, x.rows(), xa.tiles);
    let t0 = n0 / TILE;
    let steps = (n1.div_ceil(TILE) - t0) * gt * blocks;
    debug_assert!(n1.div_ceil(TILE) <= wa.tiles && gt > 0 && xa.blocks == blocks);
    if Q4 && stage.len() < blocks * TILE_BYTES {
        stage.resize(blocks * TILE_BYTES, 0);
    }
    let stage: *mut u8 = stage.as_mut_ptr();
    // Written by the tile stores before any read (a step's buffer is read only after its store).
    let mut ring = std::mem::MaybeUninit::<[Sums; RING]>::uninit();
    let ring = ring.as_mut_ptr() as *mut Sums;

    // Issues the tile instructions of step `st`, number `s`. A 4-bit weight tile is unpacked into
    // the stage at its first step: every earlier tile load from the stage precedes the unpacking in
    // program order, so its stores cannot overtake them.
    // (A macro, not a closure: a call would spill the accumulators around it.)
    macro_rules! issue {
        ($st:expr, $s:expr) => {{
            let (st, s): (Step, usize) = ($st, $s);
            if Q4 && st.g == 0 && st.l == 0 && st.b == 0 {
                // SAFETY: AVX-512 (the caller's contract); st.t < wa.tiles is a tile of w, and the
                // stage holds `blocks * 512` bytes (grown above).
                unsafe {
                    let out = std::slice::from_raw_parts_mut(stage, blocks * TILE_BYTES);
                    unpack_tile(w, st.t, out);
                }
            }
            // SAFETY: configured tiles (the ldtilecfg below); st.t < wa.tiles, st.g < xa.tiles and
            // st.b < blocks keep the operand pointers inside their buffers, and the ring has RING buffers.
            unsafe {
                let wt = if Q4 {
                    stage.add(st.b * TILE_BYTES) as *const u8
                } else {
                    wa.data.as_ptr().add((st.t * blocks + st.b) * TILE_BYTES)
                };
                let at = xa.q.as_ptr().add((st.g * blocks + st.b) * TILE_BYTES);
                let dst = ring.add(s % RING) as *mut i32;
                if s % 2 == 0 {
                    block_sums::<Q4, 0>(wt, at, dst, TILE * 4)
                } else {
                    block_sums::<Q4, 1>(wt, at, dst, TILE * 4)
                }
            }
        }};
    }

    let cfg = TileConfig::new();
    // SAFETY: the tiles are configured here and released at the end, with nothing in between that
    // could lose the configuration.
    unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
    let (mut ahead, mut issued) = (Step::first(t0), 0);
    while issued < AHEAD.min(steps) {
        issue!(ahead, issued);
        (ahead, issued) = (ahead.next(blocks, gt), issued + 1);
    }

    // Lane accumulators of the current pair (lanes past `blocks` stay +0.0, see the module docs of
    // [`crate::engine::kernels`]), and those of the lane in progress.
    let mut lanes = [[_mm512_setzero_ps(); TILE]; LANES];
    let mut acc = [_mm512_setzero_ps(); TILE];
    // Scales, then minimums, of the current weight tile's rows widened to f32: row `n`'s at
    // `n * blocks` of each half. Padding rows (past the last row) read what is there (+0.0 or an
    // earlier tile's), and their sums, computed from zero weights, are never stored.
    let mut tile_scales = vec![0f32; 2 * TILE * blocks];
    // Every access below goes through this pointer, so the writes and the reads never overlap in time.
    let base = tile_scales.as_mut_ptr();
    let widen = |t: usize| {
        // SAFETY: the two halves of `tile_scales`, disjoint; no read of them is in progress.
        let (dw, mw) = unsafe {
            (
                std::slice::from_raw_parts_mut(base, TILE * blocks),
                std::slice::from_raw_parts_mut(base.add(TILE * blocks), TILE * blocks),
            )
        };
        let rows = (t * TILE, (t * TILE + TILE).min(w.rows()), blocks);
        // SAFETY: AVX-512 (the caller's contract).
        w.scales().widen_rows(rows, dw, mw, |s, d| unsafe { widen_half_avx512(s, d) });
    };
    widen(t0);
    // SAFETY: offsets inside `tile_scales`.
    let dwp: [*const f32; TILE] = std::array::from_fn(|n| unsafe { base.add(n * blocks) } as *const f32);
    let mwp: [*const f32; TILE] =
        std::array::from_fn(|n| unsafe { base.add((TILE + n) * blocks) } as *const f32);
    let mut cur = Step::first(t0);
    for s in 0..steps {
        if issued < steps {
            issue!(ahead, issued);
            (ahead, issued) = (ahead.next(blocks, gt), issued + 1);
        }
        let b = cur.b;
        // SAFETY: AVX-512 (the caller's contract); activation tile cur.g, block b < blocks is inside
        // xa.d and xa.s; buffer s % RING holds step s's sums (stored AHEAD steps ago); row pointers
        // point to `blocks` floats.
        unsafe {
            let ab = (cur.g * blocks + b) * TILE;
            let da = _mm512_loadu_ps(xa.d.as_ptr().add(ab));
            let sa = _mm512_loadu_ps(xa.s.as_ptr().add(ab));
            let sums = ring.add(s % RING) as *const i32;
            // All 16 rows, padding ones too: constant indices keep `acc` in registers.
            macro_rules! rows {
                ($($n:literal)*) => {$(
                    let isum = _mm512_cvtepi32_ps(_mm512_load_si512(sums.add($n * TILE) as *const _));
                    let mut v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(*dwp[$n].add(b)), da), isum);
                    if Q4 {
                        v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(*mwp[$n].add(b)), sa));
                    }
                    acc[$n] = _mm512_add_ps(acc[$n], v);
                )*};
            }
            rows!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        let done = cur;
        cur = cur.next(blocks, gt);
        if cur.l == done.l && cur.p == done.p {
            continue;
        }
        lanes[done.l] = acc;
        acc = [_mm512_setzero_ps(); TILE];
        if cur.p == done.p {
            continue;
        }
        // The pair is complete: the tree, and the outputs of its rows inside n0..n1.
        for n in 0..TILE {
            let r = done.t * TILE + n;
            if r < n0 || r >= n1 {
                continue;
            }
            let a = |l: usize| lanes[l][n];
            let tree = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(a(0), a(1)), _mm512_add_ps(a(2), a(3))),
                _mm512_add_ps(_mm512_add_ps(a(4), a(5)), _mm512_add_ps(a(6), a(7))),
            );
            let mut vals = [0f32; TILE];
            // SAFETY: 16 floats into a 16-float array.
            unsafe { _mm512_storeu_ps(vals.as_mut_ptr(), tree) };
            for (c, &v) in vals.iter().enumerate().take(rows - done.g * TILE) {
                out.set(done.g * TILE + c, col0 + r - n0, v);
            }
        }
        if cur.t != done.t && s + 1 < steps {
            widen(cur.t);
        }
    }
    // SAFETY: releases the tiles configured above.
    unsafe { asm!("tilerelease", options(nostack)) };
}
