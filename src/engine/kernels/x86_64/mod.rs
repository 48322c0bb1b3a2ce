//! The x86-64 kernels: one file per instruction set (AVX2, AVX-512, AMX), what the first two share in
//! `common.rs` (the product driver) and `attend.rs` (the attention driver, over a register of lanes
//! each of them implements), the int8 key/value attention in `attend_q8.rs` (AVX2 code that every path
//! runs), and here the tables that make them paths. A path's table may take a function from a
//! narrower instruction set where the wider one gains nothing (SwiGLU and activation quantization are
//! AVX2 code on every path), so the ISA files never import each other.

pub mod amx;
mod attend;
mod attend_q8;
pub mod avx2;
pub mod avx512;
mod common;

use half::f16;

use super::{
    AttnScratch, KernelPath, Kernels, QActs, QMatrix, Query, StridedOut, block_layout_only, row_layout_only,
};
use crate::arch::vector;

pub(super) static AVX2: Kernels = Kernels {
    path: KernelPath::Avx2,
    math: &vector::AVX2,
    matmul_rows: avx2::matmul_rows,
    attend: avx2::attend,
    attend_q8: attend_q8::attend_q8,
    swiglu: avx2::swiglu,
    quantize_row: avx2::quantize_row,
    prepare_weights: block_layout_only,
    prepare_acts: row_layout_only,
};

pub(super) static AVX512: Kernels = Kernels {
    path: KernelPath::Avx512,
    math: &vector::AVX512,
    matmul_rows: avx512::matmul_rows,
    attend: attend_avx512,
    // The AVX2 kernel: integer sums and per-lane IEEE operations give the same bits at any width.
    attend_q8: attend_q8::attend_q8,
    swiglu: avx2::swiglu,
    quantize_row: avx2::quantize_row,
    prepare_weights: block_layout_only,
    prepare_acts: row_layout_only,
};

pub(super) static AMX: Kernels = Kernels {
    path: KernelPath::Amx,
    math: &vector::AMX,
    matmul_rows: matmul_amx,
    attend: attend_avx512,
    // The AVX2 kernel: integer sums and per-lane IEEE operations give the same bits at any width.
    attend_q8: attend_q8::attend_q8,
    swiglu: avx2::swiglu,
    quantize_row: avx2::quantize_row,
    prepare_weights: amx_weights,
    prepare_acts: amx_acts,
};

/// Activation rows from which the AMX path runs a product on tiles: a tile always holds 16 rows, so
/// smaller batches (decoding a few sequences) are faster on the AVX-512 kernels. Speed only.
pub const AMX_MIN_ROWS: usize = 8;

/// Attention on the AVX-512 and AMX paths: 16-lane registers when the head dimension fills them, the
/// AVX2 code otherwise (the same bits either way).
///
/// # Safety
/// The AVX-512 path's CPU features; arguments as checked by [`Kernels::attend`] (at least one query).
unsafe fn attend_avx512(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    // SAFETY: forwarded from the caller; the AVX-512 path includes AVX2 and F16C.
    unsafe {
        if queries[0].q.len().is_multiple_of(16) {
            avx512::attend(queries, keys, values, scale, scratch)
        } else {
            avx2::attend(queries, keys, values, scale, scratch)
        }
    }
}

/// The AMX path's product: on tiles when both operands carry their tile layout (the weights always, the
/// activations from [`AMX_MIN_ROWS`] rows on), else the AVX-512 kernels.
///
/// # Safety
/// The AMX path's CPU features and tile permission; arguments as checked by [`Kernels::matmul_rows`].
unsafe fn matmul_amx(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    match &w.amx {
        // SAFETY: the caller's contract; the tile layouts were built from these very operands.
        Some(wa) if x.amx.ready_for(x) => unsafe { amx::matmul_rows(w, wa, n0, n1, x, &x.amx, out, col0) },
        // SAFETY: the AMX path implies the AVX-512 path's features.
        _ => unsafe { avx512::matmul_rows(w, n0, n1, x, out, col0) },
    }
}

/// The weights in tile order, built once per matrix.
fn amx_weights(w: &mut QMatrix) {
    if w.amx.is_none() {
        w.amx = Some(amx::AmxWeights::new(w));
    }
}

/// The activations in tile order when there are enough rows to fill tiles.
fn amx_acts(x: &mut QActs) {
    if x.rows >= AMX_MIN_ROWS {
        let mut tiles = std::mem::take(&mut x.amx);
        tiles.prepare(x);
        x.amx = tiles;
    }
}
