//! How the products of a forward pass are split into parallel tasks. Threads split output rows and
//! (row, head) pairs, never a reduction: every output is computed by one task with the same arithmetic
//! whatever the split, so the split changes speed only.

use rayon::prelude::*;

use super::{PAR_MIN_ELEMS, Row, Runtime};
use crate::engine::cache::{HeadKv, KvCache};
use crate::engine::kernels::{self, KEY_TILE, QActs, QMatrix, StridedOut};

/// The attention of one layer: head counts, head size and score scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Attention {
    pub n_heads: usize,
    /// Key/value heads; `n_heads` is a multiple of it (grouped-query attention).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Factor of every score `q . k` (llama: `1 / sqrt(head_dim)`).
    pub scale: f32,
}

impl Attention {
    /// Query dimensions of one row: all heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}

/// Most consecutive positions of one sequence in one attention task (a *run*): they share the key and
/// value conversions.
const ATTN_RUN: usize = 4;

thread_local! {
    /// Per worker thread: attention buffers, kept between calls.
    static ATTN_SCRATCH: std::cell::RefCell<kernels::AttnScratch> =
        std::cell::RefCell::new(kernels::AttnScratch::default());
}

impl Runtime {
    /// Quantizes activation rows, in parallel over rows when there are many (rows are independent).
    pub fn quantize(&self, acts: &mut QActs, x: &[f32], rows: usize, cols: usize) {
        acts.quantize(self.kernel, x, rows, cols, rows * cols >= PAR_MIN_ELEMS);
        acts.prepare_for(self.kernel);
    }

    /// `out[r][..] = parts side by side . acts[r]`, split into tasks of a fixed number of output rows.
    /// That number only affects speed: each output is computed by one task with the same arithmetic.
    pub fn matmul(&self, parts: &[&QMatrix], acts: &QActs, out: &mut [f32], out_dim: usize) {
        let rows = acts.rows();
        assert!(out.len() >= rows * out_dim);
        let total: usize = parts.iter().map(|p| p.rows()).sum();
        assert_eq!(total, out_dim);
        // Multiples of 16 rows: the AMX path's weight tiles (16 rows) then never straddle two tasks.
        let rows_per_task = (total / (self.threads * 8)).clamp(16, 128).next_multiple_of(16);
        // SAFETY: `out` is borrowed mutably for the whole call; each task writes only the columns of its
        // own output rows, so no two tasks touch the same element.
        let so = unsafe { StridedOut::new(out, rows, out_dim) };
        let mut tasks = Vec::new();
        let mut col = 0;
        for (p, part) in parts.iter().enumerate() {
            let mut n0 = 0;
            while n0 < part.rows() {
                let n1 = (n0 + rows_per_task).min(part.rows());
                tasks.push((p, n0, n1, col + n0));
                n0 = n1;
            }
            col += part.rows();
        }
        let kernel = self.kernel;
        tasks.par_iter().for_each(|&(p, n0, n1, col0)| {
            kernel.matmul_rows(parts[p], n0, n1, acts, &so, col0);
        });
    }

    /// Causal grouped-query attention of `layer` for every row and head: the query of (row `r`, head
    /// `h`) is `qkv[r * qkv_dim + h * head_dim..][..head_dim]` (rows as the QKV product writes them),
    /// its output goes to `att[r * q_dim + h * head_dim..]`, and the keys and values come from the row's cache (already
    /// holding the row's own position). Work is split into tasks of (a run of up to [`ATTN_RUN`]
    /// consecutive positions of one sequence, one key/value head, some of its query heads); a task
    /// converts each key and value once for all its queries. Every query is computed by
    /// [`Kernels::attend`](kernels::Kernels::attend) with the same arithmetic whatever the task shape, so the split is free.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        spec: &Attention,
        layer: usize,
        caches: &[&mut KvCache],
        rows: &[Row],
        qkv: &[f32],
        qkv_dim: usize,
        att: &mut [f32],
    ) {
        let (hd, q_dim) = (spec.head_dim, spec.q_dim());
        // Grouped-query attention: query heads `k * heads_per_kv ..` share key/value head `k`.
        let heads_per_kv = spec.n_heads / spec.n_kv_heads;
        let scale = spec.scale;
        let kernel = self.kernel;

        // Runs of consecutive positions of one sequence.
        let mut runs = Vec::new();
        let mut r = 0;
        while r < rows.len() {
            let mut len = 1;
            while len < ATTN_RUN
                && r + len < rows.len()
                && rows[r + len].cache == rows[r].cache
                && rows[r + len].pos == rows[r].pos + len
            {
                len += 1;
            }
            runs.push((r, len));
            r += len;
        }
        // Few runs (decoding one or two sequences): one task per query head keeps the threads busy.
        let heads_per_task = if runs.len() * spec.n_kv_heads >= 4 * self.threads { heads_per_kv } else { 1 };
        let mut tasks = Vec::with_capacity(runs.len() * spec.n_heads / heads_per_task);
        for &(r0, len) in &runs {
            for h0 in (0..spec.n_heads).step_by(heads_per_task) {
                tasks.push((r0, len, h0));
            }
        }
        // SAFETY: `att` is borrowed mutably for the whole call; each (row, head) output slice belongs to
        // exactly one task.
        let out = unsafe { StridedOut::new(att, rows.len(), q_dim) };
        tasks.par_iter().for_each(|&(r0, len, h0)| {
            let kvh = h0 / heads_per_kv;
            let row0 = rows[r0];
            let npos_max = row0.pos + len;
            let cache = &caches[row0.cache];
            // A sliding-window layer sees the last `window` positions (its own included). The keys
            // go to the kernel from the key tile that holds the task's first start on, so positions
            // keep their accumulator lanes (`j mod 8`) and earlier key tiles are not even read.
            let window = cache.layout()[layer].window;
            let first = |npos: usize| window.map_or(0, |w| npos.saturating_sub(w));
            let base = first(row0.pos + 1) / KEY_TILE * KEY_TILE;
            let kv = cache.head_from(layer, kvh, base, npos_max);
            let mut queries = Vec::with_capacity(len * heads_per_task);
            for t in 0..len {
                for h in h0..h0 + heads_per_task {
                    let r = r0 + t;
                    let npos = row0.pos + t + 1;
                    queries.push(kernels::Query {
                        q: &qkv[r * qkv_dim + h * hd..][..hd],
                        start: first(npos) - base,
                        npos: npos - base,
                        // SAFETY: (row r, head h) is written by this task only.
                        out: unsafe { out.slice_mut(r, h * hd, hd) },
                    });
                }
            }
            ATTN_SCRATCH.with(|s| {
                let scratch = &mut s.borrow_mut();
                match kv {
                    HeadKv::F16 { keys, values } => kernel.attend(&mut queries, keys, values, scale, scratch),
                    HeadKv::Q8 { keys, key_scales, values, value_scales } => {
                        kernel.attend_q8(&mut queries, keys, key_scales, values, value_scales, scale, scratch)
                    }
                }
            });
        });
    }
}
