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
//! that see the whole context.
//!
//! # Rolling slots
//! A windowed layer whose window (plus [`WINDOW_ROOM`]) is shorter than the capacity keeps only the
//! positions its attention can still read: a *rolling* slot. Gemma 3 270M at 8192 positions keeps 15 of
//! its 18 layers' caches at about 670 positions instead of 8192, so a lane's cache is 35 MB instead of
//! 151 MB. A rolling slot holds
//! - positions `first..len` from its second key tile on (position `p` at `p - first + KEY_TILE`), `first`
//!   a multiple of [`KEY_TILE`] no later than the window start of the next position, so keys keep their
//!   place in a tile (and the attention kernels their accumulator lane, `j mod 8`);
//! - in its first tile, positions `0..KEY_TILE` as first written (`sink_valid` of them still current):
//!   the start token a slide keeps, which a window may reach again after a slide shortens the cache;
//! - or, while `first == 0`, positions `0..len` in order, like a full slot.
//!
//! Before each engine call [`KvCache::make_room`] moves the positions still in view down to the second
//! tile when the call's rows would not fit (one copy of about a window per [`WINDOW_ROOM`] positions);
//! a call may add at most [`WINDOW_ROOM`] positions to a rolling cache ([`KvCache::max_run`]; the
//! runtime cuts longer runs). Which positions a slot holds is storage only: attention reads the same
//! f16 numbers for every position in its window as from a full slot, so logits do not change (tests
//! compare both bit for bit).

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use super::kernels::{KEY_TILE, key_index, key_q8_index, quantize_vector};

/// Positions one engine call may add to a cache with a rolling slot (see the module docs): the room a
/// rolling slot keeps beyond its window. The encoder's prefill slices (at most 128 rows) and the
/// decoder's steps (a token and its draft) fit; the runtime cuts longer runs into calls of this size.
pub const WINDOW_ROOM: usize = 128;

/// The largest head size an int8 cache quantizes on the stack (Gemma 3's is 256).
const MAX_HEAD_DIM: usize = 512;

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

/// How a cache stores keys and values: each engine version's own
/// ([`crate::engine::EngineVersion::kv_format`]). The layout of positions (slots, key tiles, rolling) is
/// the same for both; only the numbers differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvFormat {
    /// Engine version 1: IEEE half floats, keys in [`key_index`] order.
    F16,
    /// Engine version 2: int8 by [`quantize_vector`]'s rule, one f32 scale per position and head for
    /// the keys and one for the values; keys in [`key_q8_index`] order (4 dimensions of a position
    /// adjacent, for the integer score products). The rounding happens once, when a position is
    /// written; a slide's re-rotation dequantizes a moved key, turns it and quantizes it again.
    Q8,
}

/// The numbers of every layer, in the cache's format. One buffer each for all layers: one large zeroed
/// allocation, whose pages cost memory only once written.
#[derive(Clone, Debug)]
enum Store {
    /// f16 bit patterns (u16 so that the zeroed allocation is lazy).
    F16 { k: Vec<u16>, v: Vec<u16> },
    /// int8 keys and values, and their scales per position and head (`scale_at`).
    Q8 { k: Vec<i8>, v: Vec<i8>, ks: Vec<f32>, vs: Vec<f32> },
}

/// Where one layer's keys and values sit in the cache's buffers.
#[derive(Clone, Debug)]
struct LayerSlot {
    layout: KvLayout,
    /// Positions allotted to each head, a multiple of [`KEY_TILE`]: the capacity rounded up, or for a
    /// rolling slot the window, [`WINDOW_ROOM`], a tile of slack and the sink tile.
    stride: usize,
    /// Offset of the layer's first head in `k` and `v`; head `h` starts `h * stride * head_dim` later.
    at: usize,
    /// Offset of the layer's first head in the scale buffers of [`KvFormat::Q8`]; head `h` starts
    /// `h * stride` later, one scale per place.
    sat: usize,
    /// Whether the slot keeps only the positions its window can still read (see the module docs).
    rolling: bool,
    /// First position held past the sink tile: 0 while the slot holds `0..len` in order (always, for a
    /// slot that does not roll), else a multiple of [`KEY_TILE`], at least one tile.
    first: usize,
    /// While `first > 0`: the positions `0..sink_valid` of the sink tile that are still current (a
    /// slide moves the others away).
    sink_valid: usize,
}

impl LayerSlot {
    /// Where position `p` sits among the slot's `stride` positions.
    fn place(&self, p: usize) -> usize {
        if self.first == 0 || p < self.first { p } else { p - self.first + KEY_TILE }
    }

    /// Whether the slot still holds position `p` of a cache of `len` positions.
    fn holds(&self, p: usize, len: usize) -> bool {
        p < len && (self.first == 0 || p >= self.first || p < self.sink_valid)
    }

    /// The first position the window of position `pos` reads, rounded down to its key tile (what the
    /// attention schedule reads from); 0 for a layer without a window.
    fn tile_start(&self, pos: usize) -> usize {
        self.layout.window.map_or(0, |w| (pos + 1).saturating_sub(w) / KEY_TILE * KEY_TILE)
    }

    /// Where head `h`'s keys (and values) start in `k` and `v`, and its scales in the scale buffers.
    fn head_at(&self, h: usize) -> (usize, usize) {
        (self.at + h * self.stride * self.layout.head_dim, self.sat + h * self.stride)
    }

    /// The slot after `slide(keep, drop)` of a cache of `len` positions, if it rolls: which positions
    /// it then holds (the same rule for both formats).
    fn after_rolling_slide(&self, keep: usize, drop: usize, len: usize) -> LayerSlot {
        let new_len = len - drop;
        let mut new = self.clone();
        new.first = self.tile_start(new_len);
        if new.first < KEY_TILE {
            new.first = 0;
        } else {
            new.sink_valid = if self.first == 0 { KEY_TILE } else { self.sink_valid }.min(keep);
        }
        new
    }
}

/// Which of `hd` dimensions the RoPE `pairs` turn; panics if a pair repeats a dimension or two pairs
/// share one, since a slide would then turn a dimension twice.
fn rotated_dims(hd: usize, pairs: &[(usize, usize)]) -> Vec<bool> {
    let mut rotated = vec![false; hd];
    for &(d0, d1) in pairs {
        assert!(d0 != d1 && !rotated[d0] && !rotated[d1], "RoPE pairs overlap");
        rotated[d0] = true;
        rotated[d1] = true;
    }
    rotated
}

/// Buffers of [`KvCache::slide_layer`], kept across layers so that a slide allocates once.
#[derive(Default)]
pub(crate) struct SlideScratch {
    bits: Vec<u16>,
    a: Vec<f32>,
    b: Vec<f32>,
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
    /// Positions one call may add, when a slot rolls.
    max_run: Option<usize>,
    /// Every layer's keys and values.
    store: Store,
}

impl KvCache {
    /// An empty cache, one slot per layout; windowed layers roll when that saves memory. The memory is
    /// requested zeroed (`vec![0u16; n]` becomes a zeroed allocation), so pages not yet written cost no
    /// resident memory.
    pub(crate) fn new(layouts: &[KvLayout], capacity: usize, format: KvFormat) -> Self {
        Self::with_room(layouts, capacity, WINDOW_ROOM, format)
    }

    /// [`KvCache::new`] with `room` instead of [`WINDOW_ROOM`] positions per call: small rooms make
    /// short tests roll often. `usize::MAX` gives a cache that never rolls.
    pub(crate) fn with_room(layouts: &[KvLayout], capacity: usize, room: usize, format: KvFormat) -> Self {
        let full = capacity.next_multiple_of(KEY_TILE);
        let mut slots = Vec::with_capacity(layouts.len());
        let (mut at, mut sat) = (0, 0);
        let mut rolls = false;
        for &layout in layouts {
            // A window start rounds down by at most KEY_TILE - 1 positions, so a call of `room` rows
            // needs `window - 1 + KEY_TILE - 1 + room` positions, plus the sink tile.
            let rolling_stride = layout
                .window
                .and_then(|w| w.checked_add(room)?.checked_add(2 * KEY_TILE - 2))
                .map(|n| n.next_multiple_of(KEY_TILE))
                .filter(|&n| n < full);
            let stride = rolling_stride.unwrap_or(full);
            rolls |= rolling_stride.is_some();
            slots.push(LayerSlot {
                layout,
                stride,
                at,
                sat,
                rolling: rolling_stride.is_some(),
                first: 0,
                sink_valid: 0,
            });
            at += layout.kv_heads * stride * layout.head_dim;
            sat += layout.kv_heads * stride;
        }
        let store = match format {
            KvFormat::F16 => Store::F16 { k: vec![0u16; at], v: vec![0u16; at] },
            KvFormat::Q8 => {
                Store::Q8 { k: vec![0i8; at], v: vec![0i8; at], ks: vec![0f32; sat], vs: vec![0f32; sat] }
            }
        };
        KvCache { layouts: layouts.to_vec(), slots, capacity, max_run: rolls.then_some(room), len: 0, store }
    }

    /// How this cache stores keys and values.
    pub fn format(&self) -> KvFormat {
        match self.store {
            Store::F16 { .. } => KvFormat::F16,
            Store::Q8 { .. } => KvFormat::Q8,
        }
    }

    /// The most positions one call may add ([`WINDOW_ROOM`]) when a slot rolls; `None` when none does.
    pub fn max_run(&self) -> Option<usize> {
        self.max_run
    }

    /// Bytes of keys and values allotted (touched or not).
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::F16 { k, v } => 2 * (k.len() + v.len()),
            Store::Q8 { k, v, ks, vs } => k.len() + v.len() + 4 * (ks.len() + vs.len()),
        }
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
        for slot in &mut self.slots {
            slot.first = 0;
        }
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

    /// `Err((layer, first))` when a rolling slot no longer holds the window of the next position (the
    /// cache was truncated below positions it had already let go of): `first` is where it now begins.
    pub(crate) fn check_window(&self) -> Result<(), (usize, usize)> {
        for (layer, slot) in self.slots.iter().enumerate() {
            if slot.first > 0 && slot.tile_start(self.len) < slot.first {
                return Err((layer, slot.first));
            }
        }
        Ok(())
    }

    /// `Err((layer, first))` when `slide(keep, drop)` would need a position a rolling slot no longer
    /// holds: a slide that leaves fewer positions than the window reads the sink tile, and only the
    /// positions every earlier slide kept (`keep` of them) are still current there. A coder slides
    /// with one `keep` throughout, so this happens only to a caller that changes it.
    pub(crate) fn check_slide(&self, keep: usize, drop: usize) -> Result<(), (usize, usize)> {
        let len = self.len;
        for (layer, slot) in self.slots.iter().enumerate().filter(|(_, s)| s.rolling) {
            let window = slot.layout.window.unwrap_or(usize::MAX);
            let needed = (len - drop + 1).saturating_sub(window);
            let lost = (needed..len - drop).any(|t| !slot.holds(if t < keep { t } else { t + drop }, len));
            if lost {
                return Err((layer, slot.first));
            }
        }
        Ok(())
    }

    /// Makes every rolling slot ready for `adding` more positions (at most [`KvCache::max_run`]): where
    /// they would not fit, the positions from the window start of the next position on move down to the
    /// slot's second tile. Keys move by whole tiles, values by whole positions, as bits.
    pub(crate) fn make_room(&mut self, adding: usize) {
        let len = self.len;
        for slot in self.slots.iter_mut().filter(|s| s.rolling) {
            let end = len + adding;
            if slot.place(end.saturating_sub(1)) < slot.stride {
                continue;
            }
            let first = slot.tile_start(len);
            assert!(first >= KEY_TILE && first >= slot.first, "rolling slot cannot make room");
            assert!(end - first + KEY_TILE <= slot.stride, "{adding} positions exceed the room of a call");
            let hd = slot.layout.head_dim;
            let (from, to) = (slot.place(first), KEY_TILE);
            let tiles_end = slot.place(len - 1) / KEY_TILE * KEY_TILE + KEY_TILE;
            let values_end = slot.place(len - 1) + 1;
            for h in 0..slot.layout.kv_heads {
                let (head, scales) = slot.head_at(h);
                let keys = head + from * hd..head + tiles_end * hd;
                let values = head + from * hd..head + values_end * hd;
                match &mut self.store {
                    Store::F16 { k, v } => {
                        k.copy_within(keys, head + to * hd);
                        v.copy_within(values, head + to * hd);
                    }
                    Store::Q8 { k, v, ks, vs } => {
                        k.copy_within(keys, head + to * hd);
                        v.copy_within(values, head + to * hd);
                        ks.copy_within(scales + from..scales + tiles_end, scales + to);
                        vs.copy_within(scales + from..scales + values_end, scales + to);
                    }
                }
            }
            if slot.first == 0 {
                slot.sink_valid = KEY_TILE;
            }
            slot.first = first;
        }
    }

    /// Stores the keys and values of `pos` in `layer` (all heads, `[kv_head][head_dim]`), rounding to
    /// f16, or quantizing each head's key and value to int8 ([`quantize_vector`]).
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let slot = &self.slots[layer];
        let layout = slot.layout;
        let hd = layout.head_dim;
        assert!(pos < self.capacity && k.len() == layout.kv_dim() && v.len() == layout.kv_dim());
        assert!(pos >= slot.first, "position {pos} is before the rolling slot's first {}", slot.first);
        let place = slot.place(pos);
        assert!(place < slot.stride, "position past the rolling slot: make_room was not called");
        for h in 0..layout.kv_heads {
            let (head, scales) = slot.head_at(h);
            let (kh, vh) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            let values = head + place * hd..head + place * hd + hd;
            match &mut self.store {
                Store::F16 { k, v } => {
                    for (d, &x) in kh.iter().enumerate() {
                        k[head + key_index(hd, place, d)] = f16::from_f32(x).to_bits();
                    }
                    for (dst, &x) in v[values].iter_mut().zip(vh) {
                        *dst = f16::from_f32(x).to_bits();
                    }
                }
                Store::Q8 { k, v, ks, vs } => {
                    let mut row = [0i8; MAX_HEAD_DIM];
                    assert!(hd <= MAX_HEAD_DIM, "head size {hd} above {MAX_HEAD_DIM}");
                    ks[scales + place] = quantize_vector(kh, &mut row[..hd]);
                    for (d, &q) in row[..hd].iter().enumerate() {
                        k[head + key_q8_index(hd, place, d)] = q;
                    }
                    vs[scales + place] = quantize_vector(vh, &mut v[values]);
                }
            }
        }
    }

    /// Removes positions `keep..keep + drop` of `layer`: positions `keep + drop..len` move down by `drop`,
    /// positions `0..keep` stay. Values and the key dimensions in no pair move as bits. Each
    /// rotated pair of dimensions `pairs[i]` of the moved keys is converted to f32 (exact), given to
    /// `rotate(i, a, b)` as two columns (`a[m]`, `b[m]` the pair of the `m`-th moved position), and
    /// rounded back to f16 to nearest even, as [`KvCache::write`] rounds (the slice conversions of
    /// `half` give the bits of its element-wise `f16::from_f32`, with F16C or without). The length is
    /// the caller's to update once every layer has moved ([`super::runtime::slide`]).
    ///
    /// Dimension by dimension, positions move in ascending order and a column is read completely
    /// before it is written: a source (`j + drop`) is never a destination already written (`<= j`),
    /// so the move is safe in place.
    pub(crate) fn slide_layer(
        &mut self,
        layer: usize,
        keep: usize,
        drop: usize,
        pairs: &[(usize, usize)],
        mut rotate: impl FnMut(usize, &mut [f32], &mut [f32]),
        scratch: &mut SlideScratch,
    ) {
        if self.format() == KvFormat::Q8 {
            return self.slide_q8(layer, keep, drop, pairs, rotate);
        }
        if self.slots[layer].rolling {
            return self.slide_rolling(layer, keep, drop, pairs, rotate, scratch);
        }
        let LayerSlot { layout, stride, at, .. } = self.slots[layer];
        let hd = layout.head_dim;
        assert!(keep + drop <= self.len);
        // Which dimensions the pairs cover: the others move as bits.
        let rotated = rotated_dims(hd, pairs);
        if drop == 0 {
            return;
        }
        let (src, dst) = (keep + drop..self.len, keep..self.len - drop);
        if src.is_empty() {
            return;
        }
        let SlideScratch { bits, a, b } = scratch;
        let Store::F16 { k: kbuf, v: vbuf } = &mut self.store else { unreachable!("an f16 cache") };
        for h in 0..layout.kv_heads {
            let head = at + h * stride * hd;
            let keys = &mut kbuf[head..head + stride * hd];
            // Destination tile by tile: each dimension's run of up to 16 positions is contiguous
            // there, and comes from at most two runs of the source (its positions cross at most one
            // tile boundary).
            let mut j0 = dst.start;
            while j0 < dst.end {
                let j1 = (j0 / KEY_TILE + 1) * KEY_TILE;
                let j1 = j1.min(dst.end);
                let n = j1 - j0;
                let (s0, s1) = (j0 + drop, j1 + drop);
                let split = ((s0 / KEY_TILE + 1) * KEY_TILE).min(s1);
                // Source runs of dimension d: [s0, split) and [split, s1).
                let gather = |keys: &[u16], d: usize, out: &mut [u16]| {
                    let first = split - s0;
                    let at = key_index(hd, s0, d);
                    out[..first].copy_from_slice(&keys[at..at + first]);
                    if split < s1 {
                        let at = key_index(hd, split, d);
                        out[first..].copy_from_slice(&keys[at..at + (s1 - split)]);
                    }
                };
                let to = |d: usize| key_index(hd, j0, d);
                bits.resize(n, 0);
                a.resize(n, 0.0);
                b.resize(n, 0.0);
                for (i, &(d0, d1)) in pairs.iter().enumerate() {
                    gather(keys, d0, bits);
                    bits.reinterpret_cast::<f16>().convert_to_f32_slice(a);
                    gather(keys, d1, bits);
                    bits.reinterpret_cast::<f16>().convert_to_f32_slice(b);
                    rotate(i, a, b);
                    let at = to(d0);
                    keys[at..at + n].reinterpret_cast_mut::<f16>().convert_from_f32_slice(a);
                    let at = to(d1);
                    keys[at..at + n].reinterpret_cast_mut::<f16>().convert_from_f32_slice(b);
                }
                for d in (0..hd).filter(|&d| !rotated[d]) {
                    gather(keys, d, bits);
                    let at = to(d);
                    keys[at..at + n].copy_from_slice(bits);
                }
                j0 = j1;
            }
            let values = &mut vbuf[head..head + stride * hd];
            values.copy_within(src.start * hd..src.end * hd, dst.start * hd);
        }
    }

    /// [`KvCache::slide_layer`] for a rolling slot: the same arithmetic on every position the slot
    /// holds after the slide, from the window start of the next position (rounded down to its tile) on.
    /// The slot is copied out first and rebuilt from the copy, so no move can overwrite a source; a
    /// position in the first rounded-down tile before the window start whose source the slot no longer
    /// holds becomes zeros (attention gives it no weight and never reads it).
    fn slide_rolling(
        &mut self,
        layer: usize,
        keep: usize,
        drop: usize,
        pairs: &[(usize, usize)],
        mut rotate: impl FnMut(usize, &mut [f32], &mut [f32]),
        scratch: &mut SlideScratch,
    ) {
        let old = self.slots[layer].clone();
        let (len, hd) = (self.len, old.layout.head_dim);
        assert!(keep + drop <= len);
        if drop == 0 || keep + drop == len {
            return;
        }
        let new_len = len - drop;
        let window = old.layout.window.expect("a rolling slot has a window");
        let needed = (new_len + 1).saturating_sub(window);
        let new = old.after_rolling_slide(keep, drop, len);
        let source = |t: usize| if t < keep { t } else { t + drop };
        let targets = new.first..new_len;
        for t in targets.clone().filter(|&t| t >= needed) {
            assert!(old.holds(source(t), len), "rolling slot lost position {} of its window", source(t));
        }
        let SlideScratch { bits, a, b } = scratch;
        let n = targets.len();
        let mut out = vec![0u16; n];
        let Store::F16 { k: kbuf, v: vbuf } = &mut self.store else { unreachable!("an f16 cache") };
        for h in 0..old.layout.kv_heads {
            let head = old.at + h * old.stride * hd;
            let keys: Vec<u16> = kbuf[head..head + old.stride * hd].to_vec();
            let values: Vec<u16> = vbuf[head..head + old.stride * hd].to_vec();
            let key =
                |s: usize, d: usize| if old.holds(s, len) { keys[key_index(hd, old.place(s), d)] } else { 0 };
            let dst = &mut kbuf[head..head + old.stride * hd];
            let mut store = |d: usize, column: &[u16]| {
                for (t, &x) in targets.clone().zip(column) {
                    dst[key_index(hd, new.place(t), d)] = x;
                }
            };
            let mut rotated = vec![false; hd];
            for (i, &(d0, d1)) in pairs.iter().enumerate() {
                rotated[d0] = true;
                rotated[d1] = true;
                bits.clear();
                bits.extend(targets.clone().map(|t| key(source(t), d0)));
                a.resize(n, 0.0);
                bits.reinterpret_cast::<f16>().convert_to_f32_slice(a);
                bits.clear();
                bits.extend(targets.clone().map(|t| key(source(t), d1)));
                b.resize(n, 0.0);
                bits.reinterpret_cast::<f16>().convert_to_f32_slice(b);
                // Only moved positions turn; a kept one (t < keep) keeps its bits.
                let moved = targets.clone().position(|t| t >= keep).unwrap_or(n);
                rotate(i, &mut a[moved..], &mut b[moved..]);
                out.reinterpret_cast_mut::<f16>().convert_from_f32_slice(a);
                store(d0, &out);
                out.reinterpret_cast_mut::<f16>().convert_from_f32_slice(b);
                store(d1, &out);
            }
            for d in (0..hd).filter(|&d| !rotated[d]) {
                bits.clear();
                bits.extend(targets.clone().map(|t| key(source(t), d)));
                store(d, bits);
            }
            let dst = &mut vbuf[head..head + old.stride * hd];
            for t in targets.clone() {
                let s = source(t);
                let at = new.place(t) * hd;
                if old.holds(s, len) {
                    let from = old.place(s) * hd;
                    dst[at..at + hd].copy_from_slice(&values[from..from + hd]);
                } else {
                    dst[at..at + hd].fill(0);
                }
            }
        }
        self.slots[layer] = new;
    }

    /// [`KvCache::slide_layer`] of an int8 cache, for full and rolling slots alike: the positions the
    /// slot holds after the slide (for a full slot `keep..len - drop`, whose sources are `t + drop`; for
    /// a rolling one from the window start of the next position, rounded down to its tile, on) get
    /// their source's key and value. A moved key (`t >= keep`) is dequantized (`q as f32 * scale`),
    /// each pair `pairs[i]` of its dimensions turned by `rotate(i, a, b)` as in the f16 format (`a[m]`,
    /// `b[m]` the pair of the `m`-th moved position), and the whole key quantized again by
    /// [`quantize_vector`]; values, their scales and kept keys move as they are. A target whose source
    /// a rolling slot no longer holds (before the window, in the first tile) becomes zeros with scale 0.
    /// Every source is read before anything is written, so the move is safe in place.
    fn slide_q8(
        &mut self,
        layer: usize,
        keep: usize,
        drop: usize,
        pairs: &[(usize, usize)],
        mut rotate: impl FnMut(usize, &mut [f32], &mut [f32]),
    ) {
        let old = self.slots[layer].clone();
        let (len, hd) = (self.len, old.layout.head_dim);
        assert!(keep + drop <= len);
        // Only the pairs' check: a moved key is quantized again as a whole, so which of its dimensions
        // turn does not change how it is stored.
        rotated_dims(hd, pairs);
        if drop == 0 || keep + drop == len {
            return;
        }
        let new_len = len - drop;
        let new = if old.rolling { old.after_rolling_slide(keep, drop, len) } else { old.clone() };
        let source = |t: usize| if t < keep { t } else { t + drop };
        let targets = if old.rolling { new.first..new_len } else { keep..new_len };
        if let Some(window) = old.layout.window.filter(|_| old.rolling) {
            let needed = (new_len + 1).saturating_sub(window);
            for t in targets.clone().filter(|&t| t >= needed) {
                assert!(old.holds(source(t), len), "rolling slot lost position {} of its window", source(t));
            }
        }
        let n = targets.len();
        let moved = targets.clone().position(|t| t >= keep).unwrap_or(n);
        let Store::Q8 { k, v, ks, vs } = &mut self.store else { unreachable!("an int8 cache") };
        let (mut keys, mut key_scales) = (vec![0i8; n * hd], vec![0f32; n]);
        let (mut values, mut value_scales) = (vec![0i8; n * hd], vec![0f32; n]);
        let mut turned = vec![0f32; (n - moved) * hd];
        let (mut a, mut b) = (vec![0f32; n - moved], vec![0f32; n - moved]);
        for h in 0..old.layout.kv_heads {
            let (head, scales) = old.head_at(h);
            // Read every target's source.
            for (m, t) in targets.clone().enumerate() {
                let s = source(t);
                let row = m * hd..(m + 1) * hd;
                if !old.holds(s, len) {
                    keys[row.clone()].fill(0);
                    values[row].fill(0);
                    key_scales[m] = 0.0;
                    value_scales[m] = 0.0;
                    continue;
                }
                let p = old.place(s);
                for d in 0..hd {
                    keys[m * hd + d] = k[head + key_q8_index(hd, p, d)];
                }
                values[row].copy_from_slice(&v[head + p * hd..head + (p + 1) * hd]);
                key_scales[m] = ks[scales + p];
                value_scales[m] = vs[scales + p];
            }
            // Turn the moved keys back and quantize them again.
            for (i, row) in (moved..n).enumerate() {
                for d in 0..hd {
                    turned[i * hd + d] = keys[row * hd + d] as f32 * key_scales[row];
                }
            }
            for (i, &(d0, d1)) in pairs.iter().enumerate() {
                for r in 0..n - moved {
                    a[r] = turned[r * hd + d0];
                    b[r] = turned[r * hd + d1];
                }
                rotate(i, &mut a, &mut b);
                for r in 0..n - moved {
                    turned[r * hd + d0] = a[r];
                    turned[r * hd + d1] = b[r];
                }
            }
            for (i, row) in (moved..n).enumerate() {
                let q = &mut keys[row * hd..(row + 1) * hd];
                key_scales[row] = quantize_vector(&turned[i * hd..(i + 1) * hd], q);
            }
            // Write them where the slot keeps them now.
            for (m, t) in targets.clone().enumerate() {
                let p = new.place(t);
                for d in 0..hd {
                    k[head + key_q8_index(hd, p, d)] = keys[m * hd + d];
                }
                v[head + p * hd..head + (p + 1) * hd].copy_from_slice(&values[m * hd..(m + 1) * hd]);
                ks[scales + p] = key_scales[m];
                vs[scales + p] = value_scales[m];
            }
        }
        self.slots[layer] = new;
    }

    /// Keys and values of one head of `layer` for positions `0..positions` ([`KvCache::head_from`]).
    #[cfg(test)]
    pub(crate) fn head(&self, layer: usize, head: usize, positions: usize) -> HeadKv<'_> {
        self.head_from(layer, head, 0, positions)
    }

    /// Keys and values of one head of `layer` for positions `from..positions`, `from` a multiple of
    /// [`KEY_TILE`] (whole key tiles): position `from + j` is position `j` of the slices. The key tiles
    /// that hold them (positions past `len` in the last tile are stale or zero) and `[position][head_dim]`
    /// values, with an int8 cache's scales (the keys' for whole tiles too), as
    /// [`super::kernels::Kernels::attend`] and [`super::kernels::Kernels::attend_q8`] take them. What a
    /// sliding-window layer's attention reads from its window's first tile on.
    pub(crate) fn head_from(&self, layer: usize, head: usize, from: usize, positions: usize) -> HeadKv<'_> {
        let slot = &self.slots[layer];
        let (layout, stride) = (slot.layout, slot.stride);
        assert!(positions <= self.capacity && head < layout.kv_heads);
        assert!(from.is_multiple_of(KEY_TILE) && from <= positions);
        assert!(from >= slot.first, "positions from {from} on asked of a slot that holds {} on", slot.first);
        let hd = layout.head_dim;
        let (at, sat) = slot.head_at(head);
        // Positions `from..positions` are contiguous: all of them past `first`, or all in order.
        let (from, positions) = match positions.checked_sub(1) {
            Some(last) if positions > from => (slot.place(from), slot.place(last) + 1),
            _ => (0, 0),
        };
        assert!(positions <= stride);
        let tiles_end = positions.div_ceil(KEY_TILE) * KEY_TILE;
        let (keys, values) = (at + from * hd..at + tiles_end * hd, at + from * hd..at + positions * hd);
        match &self.store {
            Store::F16 { k, v } => {
                HeadKv::F16 { keys: k[keys].reinterpret_cast(), values: v[values].reinterpret_cast() }
            }
            Store::Q8 { k, v, ks, vs } => HeadKv::Q8 {
                keys: &k[keys],
                key_scales: &ks[sat + from..sat + tiles_end],
                values: &v[values],
                value_scales: &vs[sat + from..sat + positions],
            },
        }
    }
}

/// One head's keys and values as a cache of either format holds them ([`KvCache::head_from`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum HeadKv<'a> {
    F16 { keys: &'a [f16], values: &'a [f16] },
    Q8 { keys: &'a [i8], key_scales: &'a [f32], values: &'a [i8], value_scales: &'a [f32] },
}

impl<'a> HeadKv<'a> {
    /// The f16 keys and values (tests of the f16 format).
    #[cfg(test)]
    pub(crate) fn f16(self) -> (&'a [f16], &'a [f16]) {
        match self {
            HeadKv::F16 { keys, values } => (keys, values),
            HeadKv::Q8 { .. } => panic!("an int8 cache"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct f16 for every (layer, head, position, dimension, key or value), exact with 0.5
    /// added (below 128, f16 steps of 1/16).
    fn code(layer: usize, head: usize, pos: usize, d: usize, value: bool) -> f32 {
        let x = (pos * 8 + d) as f32 / 4.0 + (layer * 2 + head) as f32 / 16.0;
        if value { -x } else { x }
    }

    /// Slides move keys across key tiles and values by whole positions, rotate exactly the paired
    /// dimensions (the first `rotated`, paired interleaved or by halves) of each moved key, and leave
    /// the kept positions alone.
    #[test]
    fn slide_layer_moves_keys_across_tiles_and_values() {
        let layout = KvLayout { kv_heads: 2, head_dim: 8, window: None };
        let len = 45;
        // Drops within a tile and across tiles, from several keeps, some leaving nothing to move.
        let cases = [(3, 19, 6), (0, 1, 8), (5, 5, 2), (1, 16, 4), (7, 38, 6), (0, 45, 8)];
        for ((keep, drop, rotated), halves) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let half = rotated / 2;
            let pairs: Vec<(usize, usize)> =
                (0..half).map(|i| if halves { (i, i + half) } else { (2 * i, 2 * i + 1) }).collect();
            // Per dimension: (pair index, second of the pair) for the rotated ones.
            let role = |d: usize| {
                pairs.iter().enumerate().find_map(|(i, &(a, b))| {
                    if d == a {
                        Some((i, false))
                    } else if d == b {
                        Some((i, true))
                    } else {
                        None
                    }
                })
            };
            let mut cache = KvCache::new(&[layout; 2], 50, KvFormat::F16);
            for l in 0..2 {
                for pos in 0..len {
                    let k: Vec<f32> = (0..16).map(|i| code(l, i / 8, pos, i % 8, false)).collect();
                    let v: Vec<f32> = (0..16).map(|i| code(l, i / 8, pos, i % 8, true)).collect();
                    cache.write(l, pos, &k, &v);
                }
            }
            cache.set_len(len);
            let mut scratch = SlideScratch::default();
            // Marks the rotated dimensions of moved keys: pair i's first dimension gets 0.5 (i + 1), its
            // second 0.25 (exact in f16 at these magnitudes), so a pair given the wrong index shows.
            let mark = |i: usize, a: &mut [f32], b: &mut [f32]| {
                a.iter_mut().for_each(|x| *x += 0.5 * (i + 1) as f32);
                b.iter_mut().for_each(|x| *x += 0.25);
            };
            for l in 0..2 {
                cache.slide_layer(l, keep, drop, &pairs, mark, &mut scratch);
            }
            cache.set_len(len - drop);
            for l in 0..2 {
                for h in 0..2 {
                    let (keys, values) = cache.head(l, h, len - drop).f16();
                    for pos in 0..len - drop {
                        let src = if pos < keep { pos } else { pos + drop };
                        for d in 0..8 {
                            let shift = match (pos >= keep, role(d)) {
                                (true, Some((i, false))) => 0.5 * (i + 1) as f32,
                                (true, Some((_, true))) => 0.25,
                                _ => 0.0,
                            };
                            let want = f16::from_f32(code(l, h, src, d, false) + shift);
                            assert_eq!(
                                keys[key_index(8, pos, d)],
                                want,
                                "key l{l} h{h} p{pos} d{d} halves {halves}"
                            );
                            let want = f16::from_f32(code(l, h, src, d, true));
                            assert_eq!(values[pos * 8 + d], want, "value l{l} h{h} p{pos} d{d}");
                        }
                    }
                }
            }
        }
    }
}
