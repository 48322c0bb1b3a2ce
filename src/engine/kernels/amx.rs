//! The AMX path: integer block dots on Intel's tile unit (AMX-INT8), float steps on AVX-512, and the
//! same bits as every other path.
//!
//! One `tdpbusd` (4-bit weights, u8 x i8) or `tdpbssd` (8-bit weights, i8 x i8) multiplies a tile of 16
//! weight rows by a tile of 16 activation rows over one 32-element block: 256 exact block sums, where
//! [`super::avx512`] gets 8. Because every block has its own scales, the tile's K dimension is exactly
//! one block, and the sums go through the float steps of the module docs of [`super`] block by block:
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
//! Operands are laid out for the tiles once: weights at load ([`AmxWeights`]: per row tile and block 16
//! rows x 32 bytes, the last tile zero-padded; 4-bit blocks two to a byte, unpacked per row tile while
//! it is in use, so the copy costs what the packed weights cost), activations after each quantization
//! ([`AmxActs`], per block 8 rows of 64 bytes: four consecutive elements of each of 16 activation rows,
//! with their scales and block sums transposed). Padding rows are zero and their outputs are never
//! stored. Scales and minimums of the weights are read from the [`QMatrix`] itself.
//!
//! Linux hands the tile state to a process only on request ([`request_permission`]); each call
//! configures the tiles for its thread and releases them at the end.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{BLOCK, GROUP, LANES, QActs, QMatrix, StridedOut, WeightKind, i8_offset, u4_offset};

/// Rows of a weight tile, and of an activation tile.
pub const TILE: usize = 16;
/// Bytes of one operand tile: 16 rows x 32 bytes (weights) or 8 rows x 64 bytes (activations).
const TILE_BYTES: usize = TILE * BLOCK;

/// Whether this CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25) and the kernel gave
/// this process the tile data state. Asked once.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // CPUID leaf 7 exists on every x86-64 CPU that has AVX2 (checked by the caller first).
        let leaf7 = __cpuid_count(7, 0);
        let has_tiles = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0;
        has_tiles && request_permission()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux (5.16+) enables the 8 KiB tile state
/// for a process only when asked; without it the first tile instruction faults.
fn request_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it changes only this process's permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

/// A weight matrix in tile order (see the module docs).
#[derive(Clone, Debug)]
pub struct AmxWeights {
    /// Weight-row tiles: `rows.div_ceil(16)`.
    tiles: usize,
    blocks: usize,
    /// 8-bit weights: tile `t`, block `b` at `(t * blocks + b) * 512`, 16 rows x 32 bytes, element `e`
    /// of row `n` at byte `n * 32 + e`. 4-bit weights keep half the memory: tile `t`, blocks `2p` and
    /// `2p + 1` share the 512 bytes at `(t * blocks.div_ceil(2) + p) * 512`, element `e` of row `n` at
    /// byte `n * 32 + e`, block `2p` in the low nibble and block `2p + 1` (or zero) in the high one;
    /// [`matmul_rows`] unpacks a tile's blocks into bytes once for all activation tiles.
    data: Vec<u8>,
}

impl AmxWeights {
    pub fn new(w: &QMatrix) -> Self {
        let (rows, blocks) = (w.rows(), w.blocks());
        let tiles = rows.div_ceil(TILE);
        let q4 = w.kind() == WeightKind::U4;
        let stored_blocks = if q4 { blocks.div_ceil(2) } else { blocks };
        let mut data = vec![0u8; tiles * stored_blocks * TILE_BYTES];
        for n in 0..rows {
            let q = w.row_quants(n);
            let (t, r) = (n / TILE, n % TILE);
            for b in 0..blocks {
                let (slot, shift) = if q4 { (b / 2, 4 * (b % 2)) } else { (b, 0) };
                let dst = &mut data[(t * stored_blocks + slot) * TILE_BYTES + r * BLOCK..][..BLOCK];
                for (e, d) in dst.iter_mut().enumerate() {
                    *d |= if q4 {
                        let (at, from) = u4_offset(blocks, b, e);
                        ((q[at] >> from) & 15) << shift
                    } else {
                        q[i8_offset(blocks, b, e)]
                    };
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

/// The tile configuration (palette 1), two sets of three tiles so that one block's products run while
/// the previous block's sums go through the float steps: tmm0 and tmm3 = 16 weight rows x 32 bytes,
/// tmm1 and tmm4 = 8 rows x 64 bytes of activations, tmm2 and tmm5 = 16 x 16 i32 sums.
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
#[repr(C, align(64))]
struct Sums([i32; TILE * TILE]);

/// Starts the exact sums of one block for a weight tile and an activation tile, `sums[n][c]`, on tile
/// set `SET` (0: tmm0-2, 1: tmm3-5). The results are in `sums` once the store retires; the caller
/// reads them after issuing the next block on the other set, so the tile unit and the vector units
/// overlap.
///
/// # Safety
/// Tiles configured by [`TileConfig`]; `wt` and `at` point to 512 readable bytes.
#[inline(always)]
unsafe fn block_sums<const Q4: bool, const SET: usize>(wt: *const u8, at: *const i8, sums: &mut Sums) {
    macro_rules! tiles {
        ($dp:literal, $w:literal, $a:literal, $c:literal) => {
            asm!(
                concat!("tilezero ", $c),
                concat!("tileloadd ", $w, ", [{w} + {ws}*1]"),
                concat!("tileloadd ", $a, ", [{a} + {as}*1]"),
                concat!($dp, " ", $c, ", ", $w, ", ", $a),
                concat!("tilestored [{s} + {ss}*1], ", $c),
                w = in(reg) wt, ws = in(reg) BLOCK, a = in(reg) at, as = in(reg) 64usize,
                s = in(reg) sums.0.as_mut_ptr(), ss = in(reg) 64usize,
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

/// Unpacks the 4-bit blocks of one weight tile (`packed`: pairs of blocks in nibbles, see
/// [`AmxWeights`]) into `out`: block `b` as 512 bytes at `b * 512`.
///
/// # Safety
/// AVX-512 F and BW; `packed` holds `blocks.div_ceil(2) * 512` bytes, `out` `blocks * 512`.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn unpack_tile(packed: &[u8], blocks: usize, out: &mut [u8]) {
    assert!(packed.len() >= blocks.div_ceil(2) * TILE_BYTES && out.len() >= blocks * TILE_BYTES);
    let mask = _mm512_set1_epi8(0x0F);
    for b in (0..blocks).step_by(2) {
        for k in 0..TILE_BYTES / 64 {
            // SAFETY: inside both buffers (asserted above).
            unsafe {
                let v = _mm512_loadu_si512(packed.as_ptr().add(b / 2 * TILE_BYTES + k * 64) as *const _);
                let lo = _mm512_and_si512(v, mask);
                _mm512_storeu_si512(out.as_mut_ptr().add(b * TILE_BYTES + k * 64) as *mut _, lo);
                if b + 1 < blocks {
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                    _mm512_storeu_si512(out.as_mut_ptr().add((b + 1) * TILE_BYTES + k * 64) as *mut _, hi);
                }
            }
        }
    }
}

/// See [`super::matmul_rows`]; `wa` and `xa` are `w` and `x` in tile order.
///
/// # Safety
/// The AMX path's CPU features and permission ([`available`]); arguments as checked by
/// [`super::matmul_rows`]; `wa` built from `w`, `xa` prepared from `x`.
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
    let (blocks, rows) = (wa.blocks, x.rows());
    let cfg = TileConfig::new();
    let mut sums = [Sums([0; TILE * TILE]), Sums([0; TILE * TILE])];
    let mut lanes;
    // Blocks lane by lane: lane l takes blocks l, l+8, l+16, ... in increasing order.
    let order: Vec<(usize, usize)> =
        (0..LANES).flat_map(|l| (l..blocks).step_by(GROUP).map(move |b| (l, b))).collect();
    let q4 = w.kind() == WeightKind::U4;
    // One weight tile's blocks as bytes (4-bit tiles are unpacked here once for all activation tiles).
    let mut stage = if q4 { vec![0u8; blocks * TILE_BYTES] } else { Vec::new() };
    // SAFETY: tiles are configured before use and released at the end; every pointer below stays inside
    // its buffer (tile t < wa.tiles, activation tile g < xa.tiles, block b < blocks).
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack));
        for t in n0 / TILE..n1.div_ceil(TILE) {
            debug_assert!(t < wa.tiles);
            let row_of = |n: usize| t * TILE + n;
            // Scales and minimums of the tile's rows, `blocks` apart; a padding row (past the last row)
            // reads the last row's, and its sums, computed from zero weights, are never stored.
            let last = w.rows() - 1;
            let dw_rows: [*const f32; TILE] =
                std::array::from_fn(|n| w.row_scale(row_of(n).min(last)).as_ptr());
            let mw_rows: [*const f32; TILE] = std::array::from_fn(|n| {
                if q4 { w.row_min(row_of(n).min(last)).as_ptr() } else { std::ptr::null() }
            });
            let tile_w: *const u8 = if q4 {
                unpack_tile(&wa.data[t * blocks.div_ceil(2) * TILE_BYTES..], blocks, &mut stage);
                stage.as_ptr()
            } else {
                wa.data.as_ptr().add(t * blocks * TILE_BYTES)
            };
            for g in 0..xa.tiles {
                let issue = |i: usize, sums: &mut [Sums; 2]| {
                    let b = order[i].1;
                    let wt = tile_w.add(b * TILE_BYTES);
                    let at = xa.q.as_ptr().add((g * blocks + b) * TILE_BYTES);
                    match (q4, i % 2) {
                        (true, 0) => block_sums::<true, 0>(wt, at, &mut sums[0]),
                        (true, _) => block_sums::<true, 1>(wt, at, &mut sums[1]),
                        (false, 0) => block_sums::<false, 0>(wt, at, &mut sums[0]),
                        (false, _) => block_sums::<false, 1>(wt, at, &mut sums[1]),
                    }
                };
                lanes = [[_mm512_setzero_ps(); TILE]; LANES];
                let mut acc = [_mm512_setzero_ps(); TILE];
                let mut lane = 0;
                issue(0, &mut sums);
                for i in 0..order.len() {
                    if i + 1 < order.len() {
                        issue(i + 1, &mut sums);
                    }
                    let (l, b) = order[i];
                    if l != lane {
                        lanes[lane] = acc;
                        acc = [_mm512_setzero_ps(); TILE];
                        lane = l;
                    }
                    let ab = (g * blocks + b) * TILE;
                    let da = _mm512_loadu_ps(xa.d.as_ptr().add(ab));
                    let sa = _mm512_loadu_ps(xa.s.as_ptr().add(ab));
                    let sums = &sums[i % 2];
                    // All 16 rows, padding ones too: a fixed count keeps `acc` in registers.
                    for n in 0..TILE {
                        let isum =
                            _mm512_cvtepi32_ps(_mm512_load_si512(sums.0.as_ptr().add(n * TILE) as *const _));
                        let dw = _mm512_set1_ps(*dw_rows[n].add(b));
                        let mut v = _mm512_mul_ps(_mm512_mul_ps(dw, da), isum);
                        if q4 {
                            let mw = _mm512_set1_ps(*mw_rows[n].add(b));
                            v = _mm512_add_ps(v, _mm512_mul_ps(mw, sa));
                        }
                        acc[n] = _mm512_add_ps(acc[n], v);
                    }
                }
                lanes[lane] = acc;
                for n in 0..TILE {
                    let r = row_of(n);
                    if r < n0 || r >= n1 {
                        continue;
                    }
                    let a = |l: usize| lanes[l][n];
                    let tree = _mm512_add_ps(
                        _mm512_add_ps(_mm512_add_ps(a(0), a(1)), _mm512_add_ps(a(2), a(3))),
                        _mm512_add_ps(_mm512_add_ps(a(4), a(5)), _mm512_add_ps(a(6), a(7))),
                    );
                    let mut vals = [0f32; TILE];
                    _mm512_storeu_ps(vals.as_mut_ptr(), tree);
                    for (c, &v) in vals.iter().enumerate() {
                        let row = g * TILE + c;
                        if row < rows {
                            out.set(row, col0 + r - n0, v);
                        }
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack));
    }
}
