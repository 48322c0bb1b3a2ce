//! Integer matrix-product kernels: multiply-accumulates per second (criterion's "elements" are MACs),
//! scalar and AVX2, for a 576 -> 1536 product (SmolLM2's gate/up shape) of 4-bit (Q4_1-like) and
//! 8-bit (Q8_0-like) weights, at batch 1 (decoding one sequence), 16 (lock-step decoding), 64 and 256
//! (prefill), the operands carrying the AMX tile layouts as in the engine; activation quantization
//! (elements are activations) of a 256-row prefill slice; and attention (criterion's
//! "elements" are query-key pairs, 2 * head_dim multiply-adds each) for one SmolLM2 key/value head at
//! position 1024: a lone query (decoding one sequence), a GQA group of 3 (lock-step decoding),
//! 4 positions x 3 heads (a prefill tile) and 32 positions x 3 heads (a prefill run); and the same
//! attention over int8 keys and values (`attention_q8`, engine version 2), to compare with it.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use llmzip::engine::kernels::{
    AttnScratch, KEY_TILE, Kernels, QActs, QMatrix, Query, StridedOut, WeightKind,
};

/// Deterministic pseudo-random bytes: the crate's splitmix64 stream of `seed`.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    llmzip::testing::SplitMix64::new(seed).bytes(n)
}

fn matrix(kind: WeightKind, rows: usize, cols: usize) -> QMatrix {
    let blocks = rows * cols / 32;
    let scale: Vec<f32> = bytes(blocks, 1).iter().map(|&b| b as f32 * 1e-4).collect();
    match kind {
        WeightKind::U4 => {
            let min = bytes(blocks, 2).iter().map(|&b| -(b as f32) * 1e-3).collect();
            QMatrix::from_u4(rows, cols, bytes(blocks * 16, 3), scale, min).unwrap()
        }
        WeightKind::I8 => {
            let q = bytes(blocks * 32, 4).into_iter().map(|b| b as i8).collect();
            QMatrix::from_i8(rows, cols, q, scale).unwrap()
        }
    }
}

fn kernels(c: &mut Criterion) {
    let (n, k) = (1536, 576);
    let paths = Kernels::available();
    let mut group = c.benchmark_group("matmul_576x1536");
    for kind in [WeightKind::U4, WeightKind::I8] {
        let mut w = matrix(kind, n, k);
        // The extra layouts every path wants (AMX tiles), as the engine adds them; the other paths
        // ignore them.
        for path in &paths {
            w.prepare_for(path);
        }
        for batch in [1usize, 16, 64, 256] {
            let xs: Vec<f32> = bytes(batch * k, 5).iter().map(|&b| b as f32 / 128.0 - 1.0).collect();
            let mut x = QActs::new();
            x.quantize(paths[0], &xs, batch, k, false);
            for path in &paths {
                x.prepare_for(path);
            }
            let mut out = vec![0f32; batch * n];
            group.throughput(Throughput::Elements((batch * n * k) as u64));
            for &path in &paths {
                let id = BenchmarkId::new(format!("{kind:?}/{}", path.path().name()), batch);
                group.bench_function(id, |b| {
                    // SAFETY: `out` is used by this single-threaded loop only.
                    let so = unsafe { StridedOut::new(&mut out, batch, n) };
                    b.iter(|| path.matmul_rows(&w, 0, n, &x, &so, 0))
                });
            }
        }
    }
    group.finish();
}

fn quantization(c: &mut Criterion) {
    let (rows, cols) = (256usize, 576usize);
    let xs: Vec<f32> = bytes(rows * cols, 9).iter().map(|&b| b as f32 / 128.0 - 1.0).collect();
    let mut group = c.benchmark_group("quantize_256x576");
    group.throughput(Throughput::Elements((rows * cols) as u64));
    for path in Kernels::available() {
        let mut x = QActs::new();
        group.bench_function(BenchmarkId::from_parameter(path.path().name()), |b| {
            b.iter(|| x.quantize(path, &xs, rows, cols, false))
        });
    }
    group.finish();
}

/// Attention of 64-dimension heads over 1,024 positions, on every path this CPU runs: one query
/// (`single`), a group of 3 heads (`group`), 4 and 32 consecutive positions of 3 heads (`tile`,
/// `run`). `attend` runs one batch of queries on one path.
fn attention_shapes(
    c: &mut Criterion,
    group_name: &str,
    attend: impl Fn(&Kernels, &mut [Query<'_>], &mut AttnScratch),
) {
    let (hd, npos) = (ATTN_HD, ATTN_NPOS);
    let mut group = c.benchmark_group(group_name);
    for (name, positions, heads) in
        [("single", 1usize, 1usize), ("group", 1, 3), ("tile", 4, 3), ("run", 32, 3)]
    {
        let n = positions * heads;
        let qs: Vec<f32> = bytes(n * hd, 8).iter().map(|&b| b as f32 / 128.0 - 1.0).collect();
        let mut outs = vec![0f32; n * hd];
        let pairs: usize = (0..positions).map(|t| heads * (npos + t)).sum();
        group.throughput(Throughput::Elements(pairs as u64));
        for &path in &Kernels::available() {
            let mut scratch = AttnScratch::default();
            group.bench_function(BenchmarkId::new(name, path.path().name()), |b| {
                b.iter(|| {
                    let mut queries: Vec<Query> = outs
                        .chunks_exact_mut(hd)
                        .enumerate()
                        .map(|(i, out)| Query {
                            q: &qs[i * hd..(i + 1) * hd],
                            start: 0,
                            npos: npos + i / heads,
                            out,
                        })
                        .collect();
                    attend(path, &mut queries, &mut scratch);
                })
            });
        }
    }
    group.finish();
}

/// Head size and positions of the attention benches.
const ATTN_HD: usize = 64;
const ATTN_NPOS: usize = 1024;

fn attention(c: &mut Criterion) {
    let hd = ATTN_HD;
    let f16s = |n: usize, seed| -> Vec<f16> {
        bytes(n * hd, seed).iter().map(|&b| f16::from_f32(b as f32 / 64.0 - 2.0)).collect()
    };
    // Keys in whole key tiles (their layout does not change the work), values one row per position.
    let n = ATTN_NPOS + 32;
    let (keys, values) = (f16s(n.next_multiple_of(KEY_TILE), 6), f16s(n, 7));
    attention_shapes(c, "attention_hd64_pos1024", |path, queries, scratch| {
        path.attend(queries, &keys, &values, 0.125, scratch)
    });
}

/// The int8 key/value attention ([`Kernels::attend_q8`]) on the shapes of [`attention`]: keys and
/// values of random bytes, one scale per position.
fn attention_q8(c: &mut Criterion) {
    let (hd, n) = (ATTN_HD, ATTN_NPOS + 32);
    let i8s = |len: usize, seed| -> Vec<i8> { bytes(len, seed).into_iter().map(|b| b as i8).collect() };
    let scales =
        |seed| -> Vec<f32> { bytes(n, seed).iter().map(|&b| (b as f32 + 1.0) / (64.0 * 127.0)).collect() };
    let (keys, values) = (i8s(n.next_multiple_of(KEY_TILE) * hd, 6), i8s(n * hd, 7));
    let (key_scales, value_scales) = (scales(10), scales(11));
    attention_shapes(c, "attention_q8_hd64_pos1024", |path, queries, scratch| {
        path.attend_q8(queries, &keys, &key_scales, &values, &value_scales, 0.125, scratch)
    });
}

criterion_group!(benches, kernels, quantization, attention, attention_q8);
criterion_main!(benches);
