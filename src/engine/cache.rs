//! The key/value cache of one sequence, preallocated for a fixed number of positions.
//!
//! Keys (after RoPE) and values are stored as IEEE half floats. Why f16: SmolLM2 keeps 192 key and 192
//! value dimensions per layer and position, so 16 lock-step sequences of 2048 positions take 755 MB in
//! f16 and twice that in f32. The rounding f32 -> f16 (round to nearest even) is exactly specified, so
//! software and F16C hardware give the same bits; f16 -> f32 is exact. Attention always reads the cache,
//! also in prefill, so a position's keys are the same rounded values whether they were computed in the
//! same call or earlier.
//!
//! Keys are stored in key tiles of [`KEY_TILE`] positions, dimension-major inside a tile (see
//! [`key_index`]): one vector load then holds one dimension of 16 consecutive keys, and the attention
//! kernels add up a tile's scores vertically. Values stay position-major. The layout is storage only:
//! every path reads the same f16 numbers.
//!
//! Each layer has its own [`KvLayout`] (heads, head size, attention window), because architectures
//! differ per layer: Gemma 3 interleaves local layers that look back a fixed window with global layers
//! that see the whole context. Today every layer keeps all `capacity` positions; a windowed layer will
//! be able to keep only its window, which only its own slot in the cache has to know.

use half::f16;
use half::slice::HalfBitsSliceExt;

use super::kernels::{KEY_TILE, key_index};

/// What one layer keeps per position: `kv_heads` key and value heads of `head_dim` dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Positions the layer's attention looks back (its own included); `None` for the whole context.
    pub window: Option<usize>,
}

impl KvLayout {
    /// Key (and value) dimensions per position: all heads together.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Where one layer's keys and values sit in the cache's buffers.
#[derive(Clone, Debug)]
struct LayerSlot {
    layout: KvLayout,
    /// Positions allotted to each head: the capacity rounded up to a multiple of [`KEY_TILE`].
    stride: usize,
    /// Offset of the layer's first head in `k` and `v`; head `h` starts `h * stride * head_dim` later.
    at: usize,
}

/// Keys and values of one sequence: per layer `[kv_head][positions]`, one head's positions in key
/// tiles for keys and `[position][head_dim]` for values, allocated once for `capacity` positions
/// rounded up to whole tiles. Each key/value head's positions are contiguous because an attention task
/// reads exactly one head of one sequence from position 0 on: one sequential stream per task.
#[derive(Clone, Debug)]
pub struct KvCache {
    /// The layouts of `slots`, in layer order (what a model compares with its own).
    layouts: Vec<KvLayout>,
    slots: Vec<LayerSlot>,
    capacity: usize,
    /// Positions filled, `len <= capacity`; positions `0..len` hold valid keys and values in every layer.
    len: usize,
    /// Every layer's keys, as f16 bit patterns (u16 so that the zeroed allocation is lazy). One buffer
    /// for all layers: one large zeroed allocation, whose pages cost memory only once written.
    k: Vec<u16>,
    /// Every layer's values, as f16 bit patterns.
    v: Vec<u16>,
}

impl KvCache {
    /// An empty cache, one slot per layout. The memory is requested zeroed (`vec![0u16; n]` becomes a
    /// zeroed allocation), so pages not yet written cost no resident memory.
    pub(crate) fn new(layouts: &[KvLayout], capacity: usize) -> Self {
        let mut slots = Vec::with_capacity(layouts.len());
        let mut at = 0;
        for &layout in layouts {
            let stride = capacity.next_multiple_of(KEY_TILE);
            slots.push(LayerSlot { layout, stride, at });
            at += layout.kv_heads * stride * layout.head_dim;
        }
        KvCache { layouts: layouts.to_vec(), slots, capacity, len: 0, k: vec![0u16; at], v: vec![0u16; at] }
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

    /// The layout of every layer, in layer order.
    pub fn layout(&self) -> &[KvLayout] {
        &self.layouts
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity);
        self.len = len;
    }

    /// Stores the keys and values of `pos` in `layer` (all heads, `[kv_head][head_dim]`), rounding to f16.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let LayerSlot { layout, stride, at } = self.slots[layer];
        let hd = layout.head_dim;
        assert!(pos < self.capacity && k.len() == layout.kv_dim() && v.len() == layout.kv_dim());
        for h in 0..layout.kv_heads {
            let head = at + h * stride * hd;
            let keys = &mut self.k[head..head + stride * hd];
            for (d, &x) in k[h * hd..(h + 1) * hd].iter().enumerate() {
                keys[key_index(hd, pos, d)] = f16::from_f32(x).to_bits();
            }
            let at = head + pos * hd;
            for (dst, &x) in self.v[at..at + hd].iter_mut().zip(&v[h * hd..]) {
                *dst = f16::from_f32(x).to_bits();
            }
        }
    }

    /// Keys and values of one head of `layer` for positions `0..positions`: the key tiles that hold
    /// them (positions past `len` in the last tile are stale or zero) and `[position][head_dim]` values,
    /// as [`super::kernels::attend`] takes them.
    pub(crate) fn head(&self, layer: usize, head: usize, positions: usize) -> (&[f16], &[f16]) {
        let LayerSlot { layout, stride, at } = self.slots[layer];
        assert!(positions <= self.capacity && head < layout.kv_heads);
        let at = at + head * stride * layout.head_dim;
        let nk = positions.div_ceil(KEY_TILE) * KEY_TILE * layout.head_dim;
        let nv = positions * layout.head_dim;
        (self.k[at..at + nk].reinterpret_cast(), self.v[at..at + nv].reinterpret_cast())
    }
}
