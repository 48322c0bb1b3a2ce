//! The float operations of a graph, each written once with a fixed evaluation order (ARCHITECTURE.md
//! section 2): every row's result depends on that row only, so the rows of a call may run in any order
//! and on any thread.

use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, Row};
use crate::arch::math;
use crate::engine::kernels::Kernels;

/// `f(out row r, x row r)` for every row (rows of `out_width` and `width` elements), in parallel when
/// the rows are many.
pub(crate) fn rows_apply<F>(out: &mut [f32], out_width: usize, x: &[f32], width: usize, f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync,
{
    let n = x.len() / width;
    let out = &mut out[..n * out_width];
    if x.len() >= PAR_MIN_ELEMS {
        out.par_chunks_exact_mut(out_width).zip(x.par_chunks_exact(width)).for_each(|(o, x)| f(o, x));
    } else {
        for (o, x) in out.chunks_exact_mut(out_width).zip(x.chunks_exact(width)) {
            f(o, x);
        }
    }
}

/// `f(r, row r of x)` in place, in parallel when the rows are many.
pub(crate) fn rows_apply_indexed<F>(x: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks_exact_mut(width).enumerate().for_each(|(r, x)| f(r, x));
    } else {
        for (r, x) in x.chunks_exact_mut(width).enumerate() {
            f(r, x);
        }
    }
}

/// `x[i] = x[i] + y[i]` (the residual connections).
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// One RMSNorm with its weights. A graph holds one per place it normalizes (llama: before attention and
/// before the MLP, and the output norm; Gemma 3 adds norms after both blocks and on the query and key
/// heads); the weights are read as the file stores them, so a convention such as Gemma's `1 + w` is
/// the architecture's to apply when it loads them.
pub(crate) struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Vec<f32>, eps: f32) -> Self {
        RmsNorm { weight, eps }
    }

    /// Normalizes every row of `x` (rows as wide as the weights) into the same row of `out`.
    pub fn rows(&self, out: &mut [f32], x: &[f32]) {
        let dim = self.weight.len();
        rows_apply(out, dim, x, dim, |h, x| rms_norm(x, &self.weight, self.eps, h));
    }

    /// Normalizes every consecutive piece of `x` as wide as the weights, in place, with the same
    /// arithmetic as [`RmsNorm::rows`] (Gemma's norms of each query and key head).
    pub fn pieces_in_place(&self, x: &mut [f32]) {
        for piece in x.chunks_exact_mut(self.weight.len()) {
            let scale = rms_scale(piece, self.eps);
            for (v, &w) in piece.iter_mut().zip(&self.weight) {
                *v = (*v * scale) * w;
            }
        }
    }
}

/// `1 / sqrt(sum(x^2)/n + eps)`, the sum of squares taken in index order.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut ss = 0f32;
    for &v in x {
        ss += v * v;
    }
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

/// RMSNorm: `out[i] = (x[i] * (1 / sqrt(sum(x^2)/n + eps))) * w[i]`, the sum of squares taken in index
/// order. `sqrt` and division are correctly rounded IEEE operations.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * w;
    }
}

/// Which dimensions of a head RoPE turns together: the pair of frequency `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// `(2i, 2i + 1)`: the GGUF llama convention (llama.cpp's "normal" RoPE, candle's `rope_i`).
    Interleaved,
    /// `(i, i + dim/2)`: the two halves of the rotated dimensions (llama.cpp's "NeoX" RoPE, candle's
    /// `rope`), as Gemma uses it.
    Halves,
}

/// Rotary position embedding of one frequency base: the frequencies `base^(-2i/dim)` for `i < dim/2`,
/// computed once in f64, and the pairing of dimensions (an architecture with several bases, such as
/// Gemma 3's local and global layers, holds one `Rope` per base).
pub(crate) struct Rope {
    theta: Vec<f64>,
    style: RopeStyle,
}

impl Rope {
    /// `dim` is the number of leading dimensions of each head that rotate (even).
    pub fn new(base: f64, dim: usize, style: RopeStyle) -> Self {
        let theta = (0..dim / 2).map(|i| math::powf_f64(base, -((2 * i) as f64) / dim as f64)).collect();
        Rope { theta, style }
    }

    /// Pairs rotated per head: `dim / 2`.
    pub fn pairs(&self) -> usize {
        self.theta.len()
    }

    /// The two dimensions of pair `i` (both below `2 * pairs()`; the dimensions from `2 * pairs()` on
    /// are not rotated).
    pub fn pair(&self, i: usize) -> (usize, usize) {
        match self.style {
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            RopeStyle::Halves => (i, i + self.theta.len()),
        }
    }

    /// Rotates one head by the pairs `cs` of one position ([`Rope::angles`]): pair `i`'s dimensions
    /// `(a, b)` become `(a cos - b sin, a sin + b cos)`, each product rounded, then the difference or
    /// sum (no fused multiply-add), the same arithmetic for both styles.
    pub fn rotate(&self, head: &mut [f32], cs: &[(f32, f32)]) {
        match self.style {
            RopeStyle::Interleaved => rope_rotate(head, cs),
            RopeStyle::Halves => {
                let (lo, hi) = head[..2 * cs.len()].split_at_mut(cs.len());
                for ((a, b), &(cos, sin)) in lo.iter_mut().zip(hi).zip(cs) {
                    [*a, *b] = turn(*a, *b, cos, sin);
                }
            }
        }
    }

    /// `(cos, sin)` of every pair's angle for every row's position, row after row (`pairs()` per row).
    pub fn angles(&self, rows: &[Row], out: &mut Vec<(f32, f32)>) {
        out.clear();
        for row in rows {
            for &theta in &self.theta {
                let (sin, cos) = math::sin_cos_f64(row.pos as f64 * theta);
                out.push((cos as f32, sin as f32));
            }
        }
    }

    /// `(cos, sin)` of every pair's rotation by `by` positions, for moving keys already rotated to
    /// their positions ([`super::slide`]): `(s, c) = sin_cos_f64(|by| * theta_i)` in f64, then
    /// `cos = c as f32` and `sin = s as f32`, negated (exactly) when `by < 0`. For `by >= 0` these are
    /// the pairs [`Rope::angles`] gives position `by`.
    pub fn shift(&self, by: isize, out: &mut Vec<(f32, f32)>) {
        out.clear();
        for &theta in &self.theta {
            let (sin, cos) = math::sin_cos_f64(by.unsigned_abs() as f64 * theta);
            let sin = sin as f32;
            out.push((cos as f32, if by < 0 { -sin } else { sin }));
        }
    }
}

/// RoPE on one head, interleaved pairs `(2i, 2i+1)` rotated by the angle of pair `i` (the GGUF llama
/// convention, candle's `rope_i`); dimensions past `2 * cs.len()` are left as they are.
pub(crate) fn rope_rotate(head: &mut [f32], cs: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cs) {
        [pair[0], pair[1]] = turn(pair[0], pair[1], cos, sin);
    }
}

/// One pair turned: `(a cos - b sin, a sin + b cos)`.
#[inline(always)]
pub(crate) fn turn(a: f32, b: f32, cos: f32, sin: f32) -> [f32; 2] {
    [a * cos - b * sin, a * sin + b * cos]
}

/// The activation of a gated MLP, `out = act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GatedActivation {
    /// `silu(gate) * up` (llama).
    SwiGlu,
    /// `gelu_tanh(gate) * up` (Gemma), with [`math::gelu_tanh`]. One scalar loop on every kernel path:
    /// the MLP's width (2,048 for Gemma 3 270M) makes it a small part of a forward pass, and one loop
    /// cannot differ from itself.
    GeGluTanh,
}

impl GatedActivation {
    /// `out row = act(gate) * up` for every row of `gate_up` (rows of `[gate (ff), up (ff)]`).
    pub fn rows(self, kernel: &Kernels, out: &mut [f32], ff: usize, gate_up: &[f32]) {
        rows_apply(out, ff, gate_up, 2 * ff, |m, gu| {
            let (g, u) = gu.split_at(ff);
            match self {
                GatedActivation::SwiGlu => kernel.swiglu(g, u, m),
                GatedActivation::GeGluTanh => {
                    for ((o, &g), &u) in m.iter_mut().zip(g).zip(u) {
                        *o = math::gelu_tanh(g) * u;
                    }
                }
            }
        });
    }
}
