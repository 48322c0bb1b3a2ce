//! Weight matrices applied to one input, their outputs side by side (Q, K and V; gate and up).

use crate::engine::kernels::{Kernels, QMatrix};

/// One or more weight matrices applied to the same input, their outputs side by side. Parts with the
/// same block kind are fused into one matrix at load (see [`QMatrix::concat_rows`]).
pub(crate) struct Linear {
    parts: Vec<QMatrix>,
    /// Outputs of all parts together: the width of the product's output rows.
    pub out_dim: usize,
}

impl Linear {
    /// Fuses `parts` where possible and lays them out for `kernel`.
    pub fn new(parts: Vec<QMatrix>, kernel: &Kernels) -> Self {
        let out_dim = parts.iter().map(QMatrix::rows).sum();
        let mut parts = match QMatrix::concat_rows(&parts) {
            Some(fused) => vec![fused],
            None => parts,
        };
        for p in &mut parts {
            p.prepare_for(kernel);
        }
        Linear { parts, out_dim }
    }

    /// The parts, as [`super::Runtime::matmul`] takes them.
    pub fn refs(&self) -> Vec<&QMatrix> {
        self.parts.iter().collect()
    }

    /// Bytes of converted weights.
    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(QMatrix::size_bytes).sum()
    }
}
