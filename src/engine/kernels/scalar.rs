//! The portable path: the reference statement of the float order (module docs of [`super`]) in plain
//! Rust. The integer block dots may be vectorized by the compiler in any way, since integer sums are
//! exact; the float steps are written one by one in the documented order.

use half::f16;

use super::{BLOCK, LANES, QActs, QMatrix, StridedOut, WeightKind, tree8};

/// Exact integer dot product of a 4-bit block (16 nibble bytes) with an int8 block.
#[inline(always)]
fn isum_u4(w: &[u8], a: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..BLOCK / 2 {
        s += (w[j] & 15) as i32 * a[j] as i32 + (w[j] >> 4) as i32 * a[j + BLOCK / 2] as i32;
    }
    s
}

/// Exact integer dot product of two int8 blocks (`w` holds i8 bits).
#[inline(always)]
fn isum_i8(w: &[u8], a: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..BLOCK {
        s += (w[j] as i8) as i32 * a[j] as i32;
    }
    s
}

/// One output: weight row `n` against activation row `c`.
#[inline]
fn dot_row(w: &QMatrix, n: usize, x: &QActs, c: usize) -> f32 {
    let wq = w.row_quants(n);
    let dw = w.row_scale(n);
    let mw = w.row_min(n);
    let aq = x.row_q(c);
    let da = x.row_d(c);
    let sa = x.row_s(c);
    let mut acc = [0f32; LANES];
    match w.kind() {
        WeightKind::U4 => {
            for b in 0..w.blocks() {
                let isum = isum_u4(&wq[b * 16..b * 16 + 16], &aq[b * BLOCK..(b + 1) * BLOCK]);
                let t = (dw[b] * da[b]) * isum as f32;
                let u = mw[b] * sa[b];
                acc[b % LANES] += t + u;
            }
        }
        WeightKind::I8 => {
            for b in 0..w.blocks() {
                let isum = isum_i8(
                    &wq[b * BLOCK..(b + 1) * BLOCK],
                    &aq[b * BLOCK..(b + 1) * BLOCK],
                );
                let t = (dw[b] * da[b]) * isum as f32;
                acc[b % LANES] += t;
            }
        }
    }
    tree8(acc)
}

/// See [`super::matmul_rows`].
pub fn matmul_rows(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    for n in n0..n1 {
        for c in 0..x.rows() {
            out.set(c, col0 + n - n0, dot_row(w, n, x, c));
        }
    }
}

/// See [`super::attention_scores`].
pub fn attention_scores(q: &[f32], keys: &[f16], stride: usize, scale: f32, scores: &mut [f32]) {
    let hd = q.len();
    for (j, s) in scores.iter_mut().enumerate() {
        let k = &keys[j * stride..j * stride + hd];
        let mut acc = [0f32; LANES];
        for i in (0..hd).step_by(LANES) {
            for l in 0..LANES {
                acc[l] += q[i + l] * k[i + l].to_f32();
            }
        }
        *s = tree8(acc) * scale;
    }
}

/// See [`super::weighted_sum`].
pub fn weighted_sum(w: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    out.fill(0.0);
    for (j, &p) in w.iter().enumerate() {
        let v = &values[j * stride..j * stride + hd];
        for (o, x) in out.iter_mut().zip(v) {
            *o += p * x.to_f32();
        }
    }
}
