//! SentencePiece BPE (`tokenizer.ggml.model = llama`, as Gemma uses it), lossless on any bytes.
//!
//! The vocabulary is a list of pieces with a score and a type each. The encoder works as llama.cpp's
//! SPM tokenizer does, with the changes losslessness needs:
//! 1. **User-defined pieces** (type 4: Gemma's newline runs, space runs, tab runs, HTML tags) are cut out
//!    of the raw text first, leftmost-longest, and stand for their text as is (no `▁` rule). llama.cpp
//!    partitions them out the same way (longest first). The alternative, letting them take part in
//!    merges, can never produce Gemma's space runs (merges see spaces as `▁`, the runs are stored with
//!    real spaces) and costs tokens: on the first 2 MB of every file of ../shared/data, 19,074,283
//!    tokens against 18,363,315 with the cut (3.7% fewer; silesia 4.4%, canterbury-large 4.9%).
//! 2. What is left is split into **runs**: maximal stretches of valid UTF-8 that hold no literal `▁`
//!    (U+2581). Invalid bytes and every literal `▁` go out as byte tokens (`<0xXX>`, one per byte), so a
//!    piece's `▁` always stands for a space the input had, and a literal `▁` decodes back to itself.
//! 3. In a run every space becomes `▁` (no space prefix is ever added: a prefix would stand for a byte
//!    the input does not have), the run is split into characters, and repeatedly the adjacent pair whose
//!    concatenation is a **normal** piece (type 1) with the highest score is merged, ties to the leftmost
//!    pair, with a priority queue (O(n log n)). Control, unknown, unused and byte pieces never take part,
//!    so text that spells `<bos>` or `<0x41>` stays ordinary text.
//! 4. A symbol left that is not a normal piece (only single characters can be) goes out as the byte
//!    tokens of its UTF-8 bytes (a `▁` that came from a space as the byte token of the space).
//!
//! Decoding concatenates each token's bytes: a normal piece with `▁` read as a space, a user-defined
//! piece as is, a byte token as its byte, anything else as nothing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use candle_core::quantized::gguf_file::{Content, Value};

use super::{Fingerprint, TokenizerError, metadata_strings};

/// The `tokenizer.ggml.model` of this file.
pub(super) const MODEL: &str = "llama";

/// U+2581, which SentencePiece writes for a space.
const SPACE_MARK: &str = "\u{2581}";

/// SentencePiece's token types (`tokenizer.ggml.token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Everything that decides a SentencePiece tokenizer's token ids, as a GGUF stores it.
#[derive(Clone, Debug, Default)]
pub struct SentencePieceVocab {
    /// The pieces in id order (`tokenizer.ggml.tokens`).
    pub pieces: Vec<String>,
    /// One score per piece (`tokenizer.ggml.scores`); higher merges first.
    pub scores: Vec<f32>,
    /// One type per piece (`tokenizer.ggml.token_type`): 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte.
    pub types: Vec<i32>,
    /// `tokenizer.ggml.bos_token_id`: the start token. Required.
    pub bos: Option<u32>,
    /// `eos`, `unknown` and `padding` token ids, recorded in the fingerprint only.
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_space_prefix` (llama.cpp's default when absent: true). Recorded in the
    /// fingerprint; the encoder never adds a prefix either way (see the module docs).
    pub add_space_prefix: bool,
}

impl SentencePieceVocab {
    /// Reads the vocabulary a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let md = &content.metadata;
        let pieces = metadata_strings(content, "tokenizer.ggml.tokens")?;
        let array = |key: &'static str, expected: &'static str| {
            md.get(key).and_then(|v| v.to_vec().ok()).ok_or(TokenizerError::Metadata { key, expected })
        };
        let scores = array("tokenizer.ggml.scores", "an array of f32")?
            .iter()
            .map(|v| match v {
                Value::F32(s) => Ok(*s),
                _ => Err(TokenizerError::Metadata {
                    key: "tokenizer.ggml.scores",
                    expected: "an array of f32",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types = array("tokenizer.ggml.token_type", "an array of i32")?
            .iter()
            .map(|v| match v {
                Value::I32(t) => Ok(*t),
                _ => Err(TokenizerError::Metadata {
                    key: "tokenizer.ggml.token_type",
                    expected: "an array of i32",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            match md.get(key) {
                None => Ok(None),
                Some(v) => {
                    v.to_u32().map(Some).map_err(|_| TokenizerError::Metadata { key, expected: "a u32" })
                }
            }
        };
        let add_space_prefix = match md.get("tokenizer.ggml.add_space_prefix") {
            None => true,
            Some(v) => v.to_bool().map_err(|_| TokenizerError::Metadata {
                key: "tokenizer.ggml.add_space_prefix",
                expected: "a bool",
            })?,
        };
        Ok(Self {
            pieces,
            scores,
            types,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            add_space_prefix,
        })
    }
}

/// A lossless SentencePiece BPE tokenizer.
pub(super) struct SentencePiece {
    /// Normal pieces by their spelling (with `▁`): id and score (`-0` read as `0`).
    normal: HashMap<Box<[u8]>, (u32, f32), BuildHasherDefault<PieceHasher>>,
    /// User-defined pieces by first byte, longest first (ties: lowest id), for the leftmost-longest cut.
    user_defined: Vec<Vec<(Box<[u8]>, u32)>>,
    /// The byte token of each byte value.
    byte_token: [u32; 256],
    /// What token `id` stands for: `token_data[token_offsets[id]..token_offsets[id + 1]]`.
    token_data: Vec<u8>,
    token_offsets: Vec<u32>,
    start_token: u32,
    fingerprint: [u8; 32],
}

impl SentencePiece {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        Self::new(&SentencePieceVocab::from_gguf(content)?)
    }

    /// Builds the tokenizer from its vocabulary; every malformed part is a typed error.
    pub fn new(v: &SentencePieceVocab) -> Result<Self, TokenizerError> {
        let n = v.pieces.len();
        for (key, len) in
            [("tokenizer.ggml.scores", v.scores.len()), ("tokenizer.ggml.token_type", v.types.len())]
        {
            if len != n {
                return Err(TokenizerError::LengthMismatch { key, len, tokens: n });
            }
        }
        let n32 = u32::try_from(n).map_err(|_| TokenizerError::TooManyTokens(n))?;
        let check_id = |key: &'static str, id: Option<u32>| match id {
            Some(id) if id >= n32 => Err(TokenizerError::IdOutOfRange { key, id, tokens: n }),
            _ => Ok(()),
        };
        check_id("tokenizer.ggml.bos_token_id", v.bos)?;
        check_id("tokenizer.ggml.eos_token_id", v.eos)?;
        check_id("tokenizer.ggml.unknown_token_id", v.unk)?;
        check_id("tokenizer.ggml.padding_token_id", v.pad)?;
        let start_token = v.bos.ok_or(TokenizerError::Metadata {
            key: "tokenizer.ggml.bos_token_id",
            expected: "a u32 (the start token of a SentencePiece vocabulary)",
        })?;

        let mut normal = HashMap::with_capacity_and_hasher(n, BuildHasherDefault::default());
        let mut user_defined: Vec<Vec<(Box<[u8]>, u32)>> = vec![Vec::new(); 256];
        let mut byte_token = [None::<u32>; 256];
        let mut token_data = Vec::with_capacity(n * 8);
        let mut token_offsets = Vec::with_capacity(n + 1);
        token_offsets.push(0u32);
        for (id, ((piece, &score), &ty)) in v.pieces.iter().zip(&v.scores).zip(&v.types).enumerate() {
            let id = id as u32;
            match ty {
                NORMAL => {
                    if score.is_nan() {
                        return Err(TokenizerError::NanScore { id, piece: piece.clone() });
                    }
                    // -0 and 0 compare equal, as in llama.cpp's `<`; the fingerprint keeps the bits.
                    let score = if score == 0.0 { 0.0 } else { score };
                    // The first of two equal spellings wins (the later can never be produced).
                    normal.entry(piece.as_bytes().into()).or_insert((id, score));
                    if piece.contains(SPACE_MARK) {
                        token_data.extend_from_slice(piece.replace(SPACE_MARK, " ").as_bytes());
                    } else {
                        token_data.extend_from_slice(piece.as_bytes());
                    }
                }
                USER_DEFINED => {
                    if let Some(&first) = piece.as_bytes().first() {
                        user_defined[first as usize].push((piece.as_bytes().into(), id));
                    }
                    token_data.extend_from_slice(piece.as_bytes());
                }
                BYTE => {
                    let b = parse_byte_piece(piece)
                        .ok_or_else(|| TokenizerError::BadByteToken { id, piece: piece.clone() })?;
                    if let Some(first) = byte_token[b as usize] {
                        return Err(TokenizerError::DuplicateByteToken { byte: b, first, second: id });
                    }
                    byte_token[b as usize] = Some(id);
                    token_data.push(b);
                }
                UNKNOWN | CONTROL | UNUSED => {}
                other => return Err(TokenizerError::UnknownTokenType { id, ty: other }),
            }
            let end = u32::try_from(token_data.len()).map_err(|_| TokenizerError::TooManyTokens(n))?;
            token_offsets.push(end);
        }
        let mut bytes = [0u32; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = byte_token[b].ok_or(TokenizerError::MissingByteToken(b as u8))?;
        }
        for list in &mut user_defined {
            // Longest first; among equal spellings the lowest id (the list is in id order, sort is stable).
            list.sort_by_key(|(p, _)| Reverse(p.len()));
            list.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(Self {
            normal,
            user_defined,
            byte_token: bytes,
            token_data,
            token_offsets,
            start_token,
            fingerprint: fingerprint(v),
        })
    }

    /// The tokens of `bytes` (see the module docs); the caller checks that they decode back to it.
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(bytes.len() / 3 + 4);
        let mut scratch = Scratch::default();
        for chunk in bytes.utf8_chunks() {
            let text = chunk.valid().as_bytes();
            let mut run = 0;
            let mut at = 0;
            while at < text.len() {
                if let Some((len, id)) = self.user_defined_at(&text[at..]) {
                    self.encode_run(&text[run..at], &mut scratch, &mut ids);
                    ids.push(id);
                    at += len;
                    run = at;
                } else if text[at..].starts_with(SPACE_MARK.as_bytes()) {
                    self.encode_run(&text[run..at], &mut scratch, &mut ids);
                    ids.extend(SPACE_MARK.bytes().map(|b| self.byte_token[b as usize]));
                    at += SPACE_MARK.len();
                    run = at;
                } else {
                    at += utf8_len(text[at]);
                }
            }
            self.encode_run(&text[run..], &mut scratch, &mut ids);
            ids.extend(chunk.invalid().iter().map(|&b| self.byte_token[b as usize]));
        }
        ids
    }

    /// The longest user-defined piece `text` starts with (ties: lowest id), as (length, id).
    fn user_defined_at(&self, text: &[u8]) -> Option<(usize, u32)> {
        self.user_defined[text[0] as usize]
            .iter()
            .find(|(p, _)| text.starts_with(p))
            .map(|(p, id)| (p.len(), *id))
    }

    /// BPE over one run: valid UTF-8 without `▁` and without user-defined pieces.
    fn encode_run(&self, run: &[u8], s: &mut Scratch, ids: &mut Vec<u32>) {
        if run.is_empty() {
            return;
        }
        s.text.clear();
        s.symbols.clear();
        s.heap.clear();
        for &b in run {
            if b == b' ' {
                s.text.extend_from_slice(SPACE_MARK.as_bytes());
            } else {
                s.text.push(b);
            }
        }
        let mut at = 0;
        while at < s.text.len() {
            let len = utf8_len(s.text[at]);
            let i = s.symbols.len();
            s.symbols.push(Symbol { start: at, len, prev: i.wrapping_sub(1), next: i + 1 });
            at += len;
        }
        if let Some(last) = s.symbols.last_mut() {
            last.next = NONE;
        }
        for left in 1..s.symbols.len() {
            self.push_pair(s, left - 1, left);
        }
        while let Some(Pair { left: Reverse(left), right, len, .. }) = s.heap.pop() {
            let (l, r) = (s.symbols[left], s.symbols[right]);
            // Stale: one side was merged away or has grown since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != len {
                continue;
            }
            s.symbols[left].len = len;
            s.symbols[right].len = 0;
            s.symbols[left].next = r.next;
            if r.next != NONE {
                s.symbols[r.next].prev = left;
            }
            if l.prev != NONE {
                self.push_pair(s, l.prev, left);
            }
            if r.next != NONE {
                self.push_pair(s, left, r.next);
            }
        }
        let mut i = 0;
        while i != NONE {
            let sym = s.symbols[i];
            let piece = &s.text[sym.start..sym.start + sym.len];
            match self.normal.get(piece) {
                Some(&(id, _)) => ids.push(id),
                // Only a single character can be left without a piece.
                None if piece == SPACE_MARK.as_bytes() => ids.push(self.byte_token[b' ' as usize]),
                None => ids.extend(piece.iter().map(|&b| self.byte_token[b as usize])),
            }
            i = sym.next;
        }
    }

    /// Queues the merge of symbols `left` and `right` if their concatenation is a normal piece.
    fn push_pair(&self, s: &mut Scratch, left: usize, right: usize) {
        let (l, r) = (s.symbols[left], s.symbols[right]);
        let len = l.len + r.len;
        if let Some(&(_, score)) = self.normal.get(&s.text[l.start..l.start + len]) {
            s.heap.push(Pair { score: Score(score), left: Reverse(left), right, len });
        }
    }

    /// Appends the bytes of `tokens` to `out`; an id beyond the vocabulary stands for nothing.
    pub fn decode_into(&self, tokens: &[u32], out: &mut Vec<u8>) {
        for &t in tokens {
            out.extend_from_slice(self.token_bytes(t));
        }
    }

    /// The bytes token `id` stands for (empty for control tokens and ids beyond the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let id = id as usize;
        match (self.token_offsets.get(id), self.token_offsets.get(id + 1)) {
            (Some(&a), Some(&b)) => &self.token_data[a as usize..b as usize],
            _ => &[],
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.token_offsets.len() - 1
    }

    /// BOS: SentencePiece vocabularies such as Gemma's have no document-boundary token.
    pub fn start_token(&self) -> u32 {
        self.start_token
    }

    /// sha256 of the tokenizer's definition; see [`fingerprint`].
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// `<0xHH>` (two uppercase or lowercase hex digits) as its byte.
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The length of the UTF-8 character starting with `lead` (the text is valid UTF-8).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

const NONE: usize = usize::MAX;

/// A multiply-rotate hash (FxHash's) for the piece table: encoding is mostly lookups of short byte
/// strings, where std's SipHash costs more than the rest of the merge loop. Only speed depends on it: a
/// vocabulary crafted to collide makes building and encoding slower, never different.
#[derive(Default, Clone, Copy)]
struct PieceHasher(u64);

impl Hasher for PieceHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// The multiply leaves the low bits, which pick the bucket, depending on the low input bits only:
    /// fold the high bits in.
    fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

impl PieceHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    /// 0 once merged into its left neighbour.
    len: usize,
    prev: usize,
    next: usize,
}

/// A score ordered numerically (NaN is refused when building, so the order is total).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A queued merge; the max-heap pops the highest score, then the leftmost pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    score: Score,
    left: Reverse<usize>,
    right: usize,
    len: usize,
}

/// Buffers reused across the runs of one `encode` call.
#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    symbols: Vec<Symbol>,
    heap: BinaryHeap<Pair>,
}

/// sha256 over a canonical serialization of everything that decides the token ids (see
/// [`Fingerprint`] for the framing), in this order: the model kind `llama`; the decimal piece count and
/// every piece; one field of every score's f32 bit pattern (u32 LE, as stored: `-0` is not `0` here);
/// one field of every token type (i32 LE); the bos, eos, unknown and padding ids (decimal, `none` when
/// absent); `add_space_prefix` (`true`/`false`).
pub fn fingerprint(v: &SentencePieceVocab) -> [u8; 32] {
    let mut h = Fingerprint::new();
    h.put(MODEL);
    h.put(&v.pieces.len().to_string());
    for p in &v.pieces {
        h.put(p);
    }
    let scores: Vec<u8> = v.scores.iter().flat_map(|s| s.to_bits().to_le_bytes()).collect();
    h.put_bytes(&scores);
    let types: Vec<u8> = v.types.iter().flat_map(|t| t.to_le_bytes()).collect();
    h.put_bytes(&types);
    for id in [v.bos, v.eos, v.unk, v.pad] {
        h.put(&id.map_or("none".to_string(), |i| i.to_string()));
    }
    h.put(if v.add_space_prefix { "true" } else { "false" });
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary: 4 control tokens, the 256 byte tokens, user-defined newline runs and a tag,
    /// and normal pieces for "▁the", "the", "th", "he", "▁", "ab", "ba" and single characters.
    pub(crate) fn tiny_vocab() -> SentencePieceVocab {
        let mut v = SentencePieceVocab { add_space_prefix: false, ..Default::default() };
        let mut add = |p: &str, score: f32, ty: i32| {
            v.pieces.push(p.to_string());
            v.scores.push(score);
            v.types.push(ty);
        };
        for c in ["<pad>", "<eos>", "<bos>", "<unk>"] {
            add(c, 0.0, CONTROL);
        }
        for b in 0..=255u8 {
            add(&format!("<0x{b:02X}>"), 0.0, BYTE);
        }
        for u in ["\n", "\n\n", "<b>"] {
            add(u, 0.0, USER_DEFINED);
        }
        for (p, s) in [
            ("▁the", -1.0),
            ("the", -2.0),
            ("th", -3.0),
            ("he", -3.0),
            ("▁", -4.0),
            ("ab", -5.0),
            ("ba", -5.0),
        ] {
            add(p, s, NORMAL);
        }
        for p in ["t", "h", "e", "a", "<", ">", "b", "o", "s", "x", "0", "4", "1"] {
            add(p, -10.0, NORMAL);
        }
        v.bos = Some(2);
        v.eos = Some(1);
        v.unk = Some(3);
        v.pad = Some(0);
        v
    }

    fn tiny() -> SentencePiece {
        SentencePiece::new(&tiny_vocab()).unwrap()
    }

    fn id(t: &SentencePiece, piece: &str) -> u32 {
        t.normal.get(piece.as_bytes()).unwrap().0
    }

    fn round_trip(t: &SentencePiece, input: &[u8]) -> Vec<u32> {
        let ids = t.encode(input);
        let mut back = Vec::new();
        t.decode_into(&ids, &mut back);
        assert_eq!(back, input, "{ids:?}");
        ids
    }

    #[test]
    fn merges_take_the_highest_score_then_the_leftmost_pair() {
        let t = tiny();
        assert_eq!(round_trip(&t, b" the"), vec![id(&t, "▁the")]);
        assert_eq!(round_trip(&t, b"the"), vec![id(&t, "the")]);
        // "tthe": pairs "tt" (none), "th" and "he" tie at -3; the leftmost, "th", merges, then "th"+"e".
        assert_eq!(round_trip(&t, b"tthe"), vec![id(&t, "t"), id(&t, "the")]);
        // "heh": "he" (left 0) and "eh" (none): "he", "h".
        assert_eq!(round_trip(&t, b"heh"), vec![id(&t, "he"), id(&t, "h")]);
        // "ab" and "ba" tie: "aba" is "ab" + "a", "bab" is "ba" + "b".
        assert_eq!(round_trip(&t, b"aba"), vec![id(&t, "ab"), id(&t, "a")]);
        assert_eq!(round_trip(&t, b"bab"), vec![id(&t, "ba"), id(&t, "b")]);
    }

    #[test]
    fn characters_without_a_piece_become_byte_tokens() {
        let t = tiny();
        let ids = round_trip(&t, "é".as_bytes());
        assert_eq!(ids, vec![4 + 0xc3, 4 + 0xa9]);
        assert_eq!(round_trip(&t, b" "), vec![id(&t, "▁")]);
    }

    #[test]
    fn a_space_without_a_piece_is_the_byte_token_of_the_space() {
        let mut v = tiny_vocab();
        let at = v.pieces.iter().position(|p| p == "▁").unwrap();
        v.types[at] = UNUSED;
        let t = SentencePiece::new(&v).unwrap();
        assert_eq!(round_trip(&t, b" a"), vec![4 + 0x20, id(&t, "a")]);
    }

    #[test]
    fn a_literal_space_mark_comes_back_as_itself() {
        let t = tiny();
        let ids = round_trip(&t, "▁the ▁".as_bytes());
        assert_eq!(&ids[..3], &[4 + 0xe2, 4 + 0x96, 4 + 0x81]);
        assert_eq!(ids[3], id(&t, "the"), "the ▁ of ▁the never comes from a literal ▁: {ids:?}");
    }

    #[test]
    fn control_and_byte_spellings_are_ordinary_text() {
        let t = tiny();
        for text in ["<bos>", "<eos><pad>", "<0x41>", "<unk>"] {
            let ids = round_trip(&t, text.as_bytes());
            assert!(ids.iter().all(|&i| i >= 4), "{text}: a control token was produced: {ids:?}");
            assert!(ids.len() > 1, "{text}: {ids:?}");
            assert!(!ids.contains(&(4 + 0x41)), "{text}: {ids:?}");
        }
    }

    #[test]
    fn user_defined_pieces_are_cut_out_longest_first() {
        let t = tiny();
        let nl = 4 + 256;
        assert_eq!(round_trip(&t, b"\n\n\n"), vec![nl + 1, nl]);
        assert_eq!(round_trip(&t, b"<b>the"), vec![nl + 2, id(&t, "the")]);
        assert_eq!(round_trip(&t, b"a\r\nb"), vec![id(&t, "a"), 4 + 0x0d, nl, id(&t, "b")]);
    }

    #[test]
    fn hostile_and_odd_inputs_round_trip() {
        let t = tiny();
        assert!(round_trip(&t, b"").is_empty());
        assert_eq!(round_trip(&t, b"\xff\xfe\x80\xc3"), vec![4 + 0xff, 4 + 0xfe, 4 + 0x80, 4 + 0xc3]);
        assert_eq!(round_trip(&t, b"\0a\0"), vec![4, id(&t, "a"), 4]);
        for input in
            [&b"\r\n\r\n"[..], b"\xe2\x96", b"\xe2\x96\x81\xe2\x96", b"the\xffthe", "日本 ▁ é".as_bytes()]
        {
            round_trip(&t, input);
        }
        let mut rng = crate::testing::SplitMix64::new(7);
        for len in 0..300 {
            // Mostly the vocabulary's own alphabet, some noise.
            let bytes: Vec<u8> =
                (0..len).map(|_| b"the a\n<b>\xe2\x96\x81\xff"[rng.below(12) as usize]).collect();
            round_trip(&t, &bytes);
        }
    }

    #[test]
    fn malformed_vocabularies_are_typed_errors() {
        let check = |v: SentencePieceVocab, needle: &str| {
            let e = SentencePiece::new(&v).err().expect("must fail");
            assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
        };
        let mut v = tiny_vocab();
        v.scores.pop();
        check(v, "tokenizer.ggml.scores");
        let mut v = tiny_vocab();
        v.types.push(1);
        check(v, "tokenizer.ggml.token_type");
        let mut v = tiny_vocab();
        v.types[4 + 0x41] = NORMAL;
        check(v, "<0x41>");
        let mut v = tiny_vocab();
        v.pieces[4 + 0x41] = "<0xZZ>".into();
        check(v, "<0xZZ>");
        let mut v = tiny_vocab();
        v.pieces[4 + 0x41] = "<0x42>".into();
        check(v, "0x42");
        let mut v = tiny_vocab();
        v.bos = Some(100_000);
        check(v, "bos_token_id");
        let mut v = tiny_vocab();
        v.bos = None;
        check(v, "bos_token_id");
        let mut v = tiny_vocab();
        v.types[270] = 9;
        check(v, "type 9");
        let mut v = tiny_vocab();
        *v.scores.last_mut().unwrap() = f32::NAN;
        check(v, "NaN");
    }

    #[test]
    fn the_fingerprint_covers_every_field() {
        let base = fingerprint(&tiny_vocab());
        let mut changed: Vec<SentencePieceVocab> = Vec::new();
        let mut v = tiny_vocab();
        v.pieces[270] = "q".into();
        changed.push(v);
        let mut v = tiny_vocab();
        v.scores[270] = -0.0;
        changed.push(v);
        let mut v = tiny_vocab();
        v.types[3] = UNKNOWN;
        changed.push(v);
        let mut v = tiny_vocab();
        v.bos = Some(1);
        changed.push(v);
        let mut v = tiny_vocab();
        v.pad = None;
        changed.push(v);
        let mut v = tiny_vocab();
        v.add_space_prefix = true;
        changed.push(v);
        for (i, v) in changed.iter().enumerate() {
            assert_ne!(fingerprint(v), base, "change {i} is not in the fingerprint");
        }
        assert_eq!(fingerprint(&tiny_vocab()), base);
    }
}
