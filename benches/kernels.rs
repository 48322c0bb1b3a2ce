//! Integer matrix-product kernels: multiply-accumulates per second (criterion's "elements" are MACs),
//! scalar and AVX2, for a 576 -> 1536 product (SmolLM2's gate/up shape) of 4-bit (Q4_1-like) and
//! 8-bit (Q8_0-like) weights, at batch 1 (decoding) and 64 (prefill).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use llmzip::engine::kernels::{KernelPath, QActs, QMatrix, StridedOut, WeightKind, matmul_rows};

/// Deterministic pseudo-random bytes (an LCG; benches need no statistical quality).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
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
    let mut paths = vec![KernelPath::Scalar];
    if KernelPath::Avx2.check_available().is_ok() {
        paths.push(KernelPath::Avx2);
    }
    let mut group = c.benchmark_group("matmul_576x1536");
    for kind in [WeightKind::U4, WeightKind::I8] {
        let w = matrix(kind, n, k);
        for batch in [1usize, 64] {
            let xs: Vec<f32> = bytes(batch * k, 5).iter().map(|&b| b as f32 / 128.0 - 1.0).collect();
            let mut x = QActs::new();
            x.quantize(&xs, batch, k, false);
            let mut out = vec![0f32; batch * n];
            group.throughput(Throughput::Elements((batch * n * k) as u64));
            for &path in &paths {
                let id = BenchmarkId::new(format!("{kind:?}/{}", path.name()), batch);
                group.bench_function(id, |b| {
                    // SAFETY: `out` is used by this single-threaded loop only.
                    let so = unsafe { StridedOut::new(&mut out, batch, n) };
                    b.iter(|| matmul_rows(path, &w, 0, n, &x, &so, 0))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
