//! The portable path: the reference statement of the float order (module docs of [`super`]) in plain
//! Rust. The integer block dots may be vectorized by the compiler in any way, since integer sums are
//! exact; the float steps are written one by one in the documented order.

use half::f16;

use super::{
    AttnScratch, BLOCK, GROUP, KernelPath, Kernels, LANES, QActs, QMatrix, Query, StridedOut, WeightKind,
    block_layout_only, i8_offset, key_index, key_q8_index, quantize_row, quantize_vector, row_layout_only,
    scales, tree8, u4_offset, weights_q8,
};
use crate::arch::{VectorMath, math};

/// The portable table: runs everywhere, and is the reference every other path is compared with.
pub(super) static KERNELS: Kernels = Kernels {
    path: KernelPath::Scalar,
    math: VectorMath::SCALAR,
    matmul_rows,
    attend,
    attend_q8,
    swiglu,
    quantize_row,
    prepare_weights: block_layout_only,
    prepare_acts: row_layout_only,
};

/// Exact integer dot products of one interleaved group (module docs of [`super`]) of weights `w` (128
/// bytes of nibbles, or 256 bytes of i8 bits) with activations `a` (256 bytes): one sum per block.
#[inline(always)]
fn group_isums(q4: bool, w: &[u8], a: &[i8]) -> [i32; GROUP] {
    // Products of a whole group (each fits i16: at most 128 * 127), then summed per accumulator lane
    // (j / 4 within each 32-byte slice) in i32.
    let mut prod = [0i16; GROUP * BLOCK];
    if q4 {
        for u in 0..4 {
            let part = &w[u * BLOCK..(u + 1) * BLOCK];
            for (j, &byte) in part.iter().enumerate() {
                prod[u * BLOCK + j] = (byte & 15) as i16 * a[u * BLOCK + j] as i16;
                prod[(u + 4) * BLOCK + j] = (byte >> 4) as i16 * a[(u + 4) * BLOCK + j] as i16;
            }
        }
    } else {
        for (p, (&wv, &av)) in prod.iter_mut().zip(w.iter().zip(a)) {
            *p = (wv as i8) as i16 * av as i16;
        }
    }
    // Vertical sums over the 8 slices (byte j of every slice belongs to block j / 4), then 4 per block.
    let mut column = [0i32; BLOCK];
    for slice in prod.chunks_exact(BLOCK) {
        for (c, &p) in column.iter_mut().zip(slice) {
            *c += p as i32;
        }
    }
    let mut sums = [0i32; GROUP];
    for (s, four) in sums.iter_mut().zip(column.chunks_exact(4)) {
        *s = (four[0] + four[1]) + (four[2] + four[3]);
    }
    sums
}

/// Exact integer dot product of tail block `b` (stored block by block, module docs of [`super`]).
#[inline(always)]
fn tail_isum(q4: bool, w: &[u8], a: &[i8], blocks: usize, b: usize) -> i32 {
    let mut s = 0i32;
    for e in 0..BLOCK {
        let q = if q4 {
            let (at, shift) = u4_offset(blocks, b, e);
            ((w[at] >> shift) & 15) as i32
        } else {
            (w[i8_offset(blocks, b, e)] as i8) as i32
        };
        s += q * a[i8_offset(blocks, b, e)] as i32;
    }
    s
}

/// One output: weight row `n`, whose scales and minimums are `dw` and `mw`, against activation row `c`.
#[inline]
fn dot_row(w: &QMatrix, n: usize, dw: &[f32], mw: &[f32], x: &QActs, c: usize) -> f32 {
    let q4 = w.kind() == WeightKind::U4;
    let nb = w.blocks();
    let wq = w.row_quants(n);
    let aq = x.row_q(c);
    let da = x.row_d(c);
    let sa = x.row_s(c);
    let mut acc = [0f32; LANES];
    // Block b's contribution, added to lane b % 8.
    let mut add = |b: usize, isum: i32| {
        let t = (dw[b] * da[b]) * isum as f32;
        acc[b % LANES] += if q4 { t + mw[b] * sa[b] } else { t };
    };
    let groups = nb / GROUP;
    let wbytes = if q4 { GROUP * BLOCK / 2 } else { GROUP * BLOCK };
    for g in 0..groups {
        let w = &wq[g * wbytes..(g + 1) * wbytes];
        let a = &aq[g * GROUP * BLOCK..(g + 1) * GROUP * BLOCK];
        for (l, isum) in group_isums(q4, w, a).into_iter().enumerate() {
            add(g * GROUP + l, isum);
        }
    }
    for b in groups * GROUP..nb {
        add(b, tail_isum(q4, wq, aq, nb, b));
    }
    tree8(acc)
}

/// See [`Kernels::matmul_rows`].
pub fn matmul_rows(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    let nb = w.blocks();
    let (mut dw, mut mw) = (vec![0f32; nb], vec![0f32; nb]);
    for n in n0..n1 {
        w.scales().widen_rows((n, n + 1, nb), &mut dw, &mut mw, scales::widen_half);
        for c in 0..x.rows() {
            out.set(c, col0 + n - n0, dot_row(w, n, &dw, &mw, x, c));
        }
    }
}

/// Turns one query's scores into softmax numerators in place, `exp(s_j - max)`, and returns their sum
/// (lanes `j mod 8`, `j` in order, reduced by [`tree8`]): the step both attentions share.
fn softmax_numerators(scores: &mut [f32]) -> f32 {
    let mut max = f32::NEG_INFINITY;
    for &s in scores.iter() {
        if s > max {
            max = s;
        }
    }
    let mut lanes = [0f32; LANES];
    for (j, s) in scores.iter_mut().enumerate() {
        *s = math::exp(*s - max);
        lanes[j % LANES] += *s;
    }
    tree8(lanes)
}

/// See [`Kernels::attend`]: each query on its own, in the documented order.
pub fn attend(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    let scores = &mut scratch.scores;
    for query in queries.iter_mut() {
        let (q, hd) = (query.q, query.q.len());
        scores.clear();
        // Positions before the window: weight exactly 0 (`exp(-inf) = 0`), as on the SIMD paths.
        scores.resize(query.start, f32::NEG_INFINITY);
        for j in query.start..query.npos {
            let mut acc = [0f32; LANES];
            for i in (0..hd).step_by(LANES) {
                for l in 0..LANES {
                    acc[l] += q[i + l] * keys[key_index(hd, j, i + l)].to_f32();
                }
            }
            scores.push(tree8(acc) * scale);
        }
        let sum = softmax_numerators(scores);
        let out = &mut *query.out;
        out.fill(0.0);
        for (j, &p) in scores.iter().enumerate().skip(query.start) {
            let v = &values[j * hd..(j + 1) * hd];
            for (o, x) in out.iter_mut().zip(v) {
                *o += p * x.to_f32();
            }
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}

/// See [`Kernels::attend_q8`]: each query on its own, in the documented order.
pub fn attend_q8(
    queries: &mut [Query<'_>],
    keys: &[i8],
    key_scales: &[f32],
    values: &[i8],
    value_scales: &[f32],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    let (scores, qi, wq) = (&mut scratch.scores, &mut scratch.q8, &mut scratch.wq);
    let mut acc = Vec::new();
    for query in queries.iter_mut() {
        let (q, hd) = (query.q, query.q.len());
        qi.resize(hd, 0);
        let sq = quantize_vector(q, qi);
        scores.clear();
        // Positions before the window: weight exactly 0 (`exp(-inf) = 0`), as on the SIMD paths.
        scores.resize(query.start, f32::NEG_INFINITY);
        for j in query.start..query.npos {
            let mut isum = 0i32;
            for (d, &qd) in qi.iter().enumerate() {
                isum += qd as i32 * keys[key_q8_index(hd, j, d)] as i32;
            }
            scores.push(((sq * key_scales[j]) * isum as f32) * scale);
        }
        let sum = softmax_numerators(scores);
        for j in query.start..query.npos {
            scores[j] *= value_scales[j];
        }
        wq.resize(query.npos, 0);
        let factor = weights_q8(scores, query.start, query.npos, sum, wq);
        acc.clear();
        acc.resize(hd, 0);
        for j in query.start..query.npos {
            let v = &values[j * hd..(j + 1) * hd];
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += wq[j] as i32 * x as i32;
            }
        }
        for (o, &a) in query.out.iter_mut().zip(&acc) {
            *o = a as f32 * factor;
        }
    }
}

/// See [`Kernels::swiglu`].
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = math::silu(g) * u;
    }
}
