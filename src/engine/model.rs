//! [`Model`]: a loaded model of any architecture the engine runs, picked from the GGUF's
//! `general.architecture`. Adding an architecture is one file beside `llama.rs` and one line in
//! [`ARCHITECTURES`].

use candle_core::quantized::gguf_file::Content;

use super::cache::KvCache;
use super::kernels::{KernelPath, Kernels};
use super::runtime::meta::architecture;
use super::runtime::{Architecture, MAX_POSITION, Runtime, slide};
use super::{EngineError, EngineOptions, EngineVersion, gemma3, llama};

/// Builds an architecture's graph and weights from a GGUF for a runtime.
type Loader = fn(&Content, &[u8], &Runtime) -> Result<Box<dyn Architecture>, EngineError>;

/// Every architecture the engine runs, by its `general.architecture` name.
const ARCHITECTURES: &[(&str, Loader)] = &[
    (llama::ARCH, |c, f, rt| Ok(Box::new(llama::Llama::load(c, f, rt)?))),
    (gemma3::ARCH, |c, f, rt| Ok(Box::new(gemma3::Gemma3::load(c, f, rt)?))),
];

/// A loaded model with its thread pool and kernel path: tokens in, logits out, bit for bit the same for
/// every thread count, kernel path, batch and call pattern (the module docs of [`super`]).
pub struct Model {
    arch: Box<dyn Architecture>,
    rt: Runtime,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("architecture", &self.arch.name())
            .field("kernel", &self.rt.kernel().path())
            .field("threads", &self.rt.threads())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model from a parsed GGUF header and the whole file's bytes (a memory map), converting
    /// every weight into the engine's layout once. The architecture comes from `general.architecture`;
    /// one the engine does not run is [`EngineError::UnsupportedArchitecture`].
    pub fn load(content: &Content, file: &[u8], opts: &EngineOptions) -> Result<Self, EngineError> {
        let name = architecture(content)?;
        let Some(&(_, load)) = ARCHITECTURES.iter().find(|(n, _)| *n == name) else {
            return Err(EngineError::UnsupportedArchitecture { seen: name.to_string() });
        };
        let rt = Runtime::new(opts)?;
        let arch = load(content, file, &rt)?;
        Ok(Model { arch, rt })
    }

    /// The GGUF architecture name (`llama`, `gemma3`).
    pub fn architecture(&self) -> &'static str {
        self.arch.name()
    }

    pub fn vocab_size(&self) -> usize {
        self.arch.vocab()
    }

    /// The context length the model was trained for.
    pub fn max_context(&self) -> usize {
        self.arch.max_context()
    }

    /// The kernel path in use.
    pub fn kernel(&self) -> KernelPath {
        self.rt.kernel().path()
    }

    /// The kernels in use (chosen once, at load), whose vector math the quantizer shares.
    pub fn kernels(&self) -> &'static Kernels {
        self.rt.kernel()
    }

    /// Worker threads of the engine's pool.
    pub fn threads(&self) -> usize {
        self.rt.threads()
    }

    /// Bytes of converted weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        self.arch.weight_bytes()
    }

    /// An empty KV cache for `capacity` positions in `version`'s format, allocated once (for llama
    /// about `4 * n_layers * kv_dim` bytes per position in version 1, a little over half that in
    /// version 2; pages are touched only when used). The attention of every call follows its caches'
    /// format, so the version of a sequence is the version of its cache.
    pub fn new_cache(&self, capacity: usize, version: EngineVersion) -> KvCache {
        KvCache::new(self.arch.kv_layout(), capacity, version.kv_format())
    }

    /// Appends `tokens` after the positions already in `cache` and writes `tokens.len() x vocab` logits
    /// (row `t` predicts the token after `tokens[t]`). Any split of a sequence into prefill calls, or
    /// into [`Model::step`] calls, gives the same bits.
    pub fn prefill(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.prefill(&*self.arch, cache, tokens, logits)
    }

    /// Slides the cache: removes positions `keep..keep + drop` of every layer; positions
    /// `keep + drop..len` move down to `keep..len - drop` and their keys are re-rotated by `-drop`
    /// positions with each layer's RoPE; positions `0..keep` stay as they are (an attention sink such
    /// as the start token). The next [`Model::prefill`] or [`Model::step`] continues at position
    /// `cache.len()`, now `len - drop`. The arithmetic is part of the format and specified bit for bit
    /// in the engine's `runtime/slide.rs`; it is one scalar pass, the same on every kernel path and
    /// thread count. `keep + drop > cache.len()` is [`EngineError::SlideOutOfRange`], and the cache is
    /// left as it was.
    pub fn slide(&self, cache: &mut KvCache, keep: usize, drop: usize) -> Result<(), EngineError> {
        let by = isize::try_from(drop).unwrap_or(isize::MAX);
        slide::slide(&*self.arch, cache, keep, drop, -by)
    }

    /// [`Model::slide`] with the moved keys turned by `rotate_by` positions instead of `-drop`: for
    /// the tests that show the direction and the angle of the re-rotation matter. Not for coding.
    #[doc(hidden)]
    pub fn testing_slide_rotating_by(
        &self,
        cache: &mut KvCache,
        keep: usize,
        drop: usize,
        rotate_by: isize,
    ) -> Result<(), EngineError> {
        if rotate_by.unsigned_abs() >= MAX_POSITION {
            let max = MAX_POSITION - 1;
            return Err(EngineError::PositionTooLarge { position: rotate_by.unsigned_abs(), max });
        }
        slide::slide(&*self.arch, cache, keep, drop, rotate_by)
    }

    /// One token for each of `caches.len()` independent sequences (lock-step decoding): appends
    /// `tokens[i]` to `caches[i]` and writes `B x vocab` logits, row `i` for sequence `i`. Sequences may
    /// be at different positions; each row's logits are those it would get alone.
    pub fn step(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.step(&*self.arch, caches, tokens, logits)
    }

    /// A run of tokens for each of `caches.len()` independent sequences in one call (speculative
    /// decoding: each decoder lane's last token and its draft): appends `runs[i]` to `caches[i]` and
    /// writes one logits row per token, run 0's rows first. Each row's logits are those the tokens would get from
    /// [`Model::prefill`] or [`Model::step`] alone.
    pub fn extend(
        &self,
        caches: &mut [&mut KvCache],
        runs: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.extend(&*self.arch, caches, runs, logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::KvFormat;
    use crate::engine::kernels::KEY_TILE;

    /// A synthetic Gemma 3 (two local layers with a window of 24, two global ones) on the scalar path.
    fn gemma() -> Model {
        use candle_core::quantized::gguf_file::Content;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gemma3.gguf");
        crate::engine::synthetic::write_synthetic_gemma3(&path, 7, 2, |b| b as char).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let content = Content::read(&mut std::io::Cursor::new(&bytes[..])).unwrap();
        let opts =
            crate::engine::EngineOptions { threads: 2, kernel: Some(crate::engine::KernelPath::Scalar) };
        Model::load(&content, &bytes, &opts).unwrap()
    }

    /// Rolling slots give the logits of full slots bit for bit through everything a coder does to a
    /// cache: prefill in slices and in runs longer than a call's room, steps, drafts truncated back,
    /// slides that keep the window past the sink tile and one that leaves the cache shorter than the
    /// window, and a clear. Rooms of 5 and 40 positions make the slots roll every few calls.
    #[test]
    fn rolling_slots_give_the_logits_of_full_ones() {
        let model = gemma();
        let vocab = model.vocab_size();
        let layouts = model.new_cache(1, EngineVersion::V1).layout().to_vec();
        let window = layouts.iter().find_map(|l| l.window).unwrap();
        let tokens: Vec<u32> = (0..400u32).map(|i| (i * 7919 + 13) % vocab as u32).collect();
        let capacity = 260;
        for (room, format) in [(5, KvFormat::F16), (40, KvFormat::F16), (5, KvFormat::Q8), (40, KvFormat::Q8)]
        {
            let mut rolling = KvCache::with_room(&layouts, capacity, room, format);
            let mut full = KvCache::with_room(&layouts, capacity, usize::MAX, format);
            assert_eq!(rolling.max_run(), Some(room));
            assert_eq!(full.max_run(), None);
            assert!(rolling.bytes() < full.bytes());
            let mut at = 0;
            // (what, tokens) pairs: a prefill of n, a step of one, a draft of n truncated to keep
            // m, a slide (keep, drop), a clear.
            enum Op {
                Prefill(usize),
                Steps(usize),
                Draft(usize, usize),
                Slide(usize, usize),
                Clear,
            }
            let ops = [
                Op::Prefill(3),
                Op::Prefill(70),
                Op::Steps(9),
                Op::Draft(4, 1),
                Op::Prefill(room),
                Op::Draft(5, 5),
                Op::Prefill(100),
                Op::Slide(1, 37),
                Op::Prefill(17),
                Op::Steps(3),
                Op::Slide(1, 50),
                Op::Draft(3, 0),
                Op::Prefill(capacity / 2),
                // Leaves fewer positions than the window: the sink tile is read again.
                Op::Slide(1, 0),
                Op::Prefill(20),
                Op::Clear,
                Op::Prefill(capacity - 1),
            ];
            for (i, op) in ops.iter().enumerate() {
                let mut lr = vec![0f32; 0];
                let mut lf = vec![0f32; 0];
                match *op {
                    Op::Prefill(n) | Op::Draft(n, _) => {
                        let n = n.min(capacity - rolling.len());
                        let run = &tokens[at % 300..at % 300 + n];
                        lr.resize(n * vocab, 0.0);
                        lf.resize(n * vocab, 0.0);
                        model.prefill(&mut rolling, run, &mut lr).unwrap();
                        model.prefill(&mut full, run, &mut lf).unwrap();
                        if let Op::Draft(_, keep) = *op {
                            rolling.truncate(rolling.len() - n + keep);
                            full.truncate(full.len() - n + keep);
                            at += keep;
                        } else {
                            at += n;
                        }
                    }
                    Op::Steps(n) => {
                        for t in 0..n {
                            let mut a = vec![0f32; vocab];
                            let mut b = vec![0f32; vocab];
                            let tok = [tokens[(at + t) % 300]];
                            model.step(&mut [&mut rolling], &tok, &mut a).unwrap();
                            model.step(&mut [&mut full], &tok, &mut b).unwrap();
                            lr.extend(a);
                            lf.extend(b);
                        }
                        at += n;
                    }
                    Op::Slide(keep, drop) => {
                        // drop 0 stands for "all but `window / 2` positions".
                        let drop = if drop == 0 { rolling.len() - keep - window / 2 } else { drop };
                        model.slide(&mut rolling, keep, drop).unwrap();
                        model.slide(&mut full, keep, drop).unwrap();
                    }
                    Op::Clear => {
                        rolling.clear();
                        full.clear();
                    }
                }
                assert_eq!(rolling.len(), full.len(), "op {i}");
                let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert!(bits(&lr) == bits(&lf), "{format:?}, room {room}, op {i}: logits differ");
            }
            // A slide with another keep that reaches back into the sink tile: an error, never
            // other logits.
            let mut other = rolling.clone();
            model.slide(&mut other, 0, 30).unwrap();
            let drop = other.len() - 1 - window / 2;
            let err = model.slide(&mut other, 1, drop).unwrap_err();
            assert!(matches!(err, EngineError::WindowDropped { .. }), "{err}");
            // Truncated past what the rolling slots hold: an error, never other logits.
            let mut logits = vec![0f32; vocab];
            rolling.clear();
            model.prefill(&mut rolling, &tokens[..200], &mut vec![0f32; 200 * vocab]).unwrap();
            rolling.truncate(200 - room - 2 * window - KEY_TILE);
            let err = model.step(&mut [&mut rolling], &tokens[..1], &mut logits).unwrap_err();
            assert!(matches!(err, EngineError::WindowDropped { .. }), "{err}");
        }
    }
}
