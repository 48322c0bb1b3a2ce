//! The key/value cache of one sequence, preallocated for a fixed number of positions.
//!
//! Keys (after RoPE) and values are stored as IEEE half floats. Why f16: SmolLM2 keeps 192 key and 192
//! value dimensions per layer and position, so 16 lock-step sequences of 2048 positions take 755 MB in
//! f16 and twice that in f32. The rounding f32 -> f16 (round to nearest even) is exactly specified, so
//! software and F16C hardware give the same bits; f16 -> f32 is exact. Attention always reads the cache,
//! also in prefill, so a position's keys are the same rounded values whether they were computed in the
//! same call or earlier.

use half::f16;
use half::slice::HalfBitsSliceExt;

/// Keys and values of one sequence: `[layer][kv_head][position][head_dim]`, allocated once for
/// `capacity` positions. Each key/value head's positions are contiguous because an attention task reads
/// exactly one head of one sequence from position 0 on: one sequential stream per task.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    /// Positions filled, `len <= capacity`; positions `0..len` hold valid keys and values in every layer.
    len: usize,
    /// `layers * capacity * kv_dim` keys, as f16 bit patterns (u16 so that the zeroed allocation is lazy).
    k: Vec<u16>,
    /// `layers * capacity * kv_dim` values, as f16 bit patterns.
    v: Vec<u16>,
}

impl KvCache {
    /// An empty cache. The memory is requested zeroed (`vec![0u16; n]` becomes a zeroed allocation), so
    /// pages not yet written cost no resident memory.
    pub(crate) fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let n = layers * kv_heads * capacity * head_dim;
        KvCache { layers, kv_heads, head_dim, capacity, len: 0, k: vec![0u16; n], v: vec![0u16; n] }
    }

    /// Positions already processed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions this cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions that can still be added.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Forgets every position (the memory is kept for the next window).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Forgets the positions from `len` on (no effect if the cache is shorter).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn layers(&self) -> usize {
        self.layers
    }

    /// Key (and value) dimensions per position and layer: all heads together.
    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity);
        self.len = len;
    }

    /// Stores the keys and values of `pos` in `layer` (all heads, `[kv_head][head_dim]`), rounding to f16.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        assert!(pos < self.capacity && k.len() == self.kv_dim() && v.len() == self.kv_dim());
        for h in 0..self.kv_heads {
            let at = ((layer * self.kv_heads + h) * self.capacity + pos) * hd;
            for (dst, &x) in self.k[at..at + hd].iter_mut().zip(&k[h * hd..]) {
                *dst = f16::from_f32(x).to_bits();
            }
            for (dst, &x) in self.v[at..at + hd].iter_mut().zip(&v[h * hd..]) {
                *dst = f16::from_f32(x).to_bits();
            }
        }
    }

    /// Keys and values of one head of `layer` for positions `0..positions`, `[position][head_dim]`.
    pub(crate) fn head(&self, layer: usize, head: usize, positions: usize) -> (&[f16], &[f16]) {
        assert!(positions <= self.capacity && head < self.kv_heads);
        let at = (layer * self.kv_heads + head) * self.capacity * self.head_dim;
        let n = positions * self.head_dim;
        (self.k[at..at + n].reinterpret_cast(), self.v[at..at + n].reinterpret_cast())
    }
}
