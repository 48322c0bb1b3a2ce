//! Byte-level BPE (GPT-2 style, as SmolLM2 uses it; `tokenizer.ggml.model = gpt2`), lossless on any
//! bytes.
//!
//! Byte-level BPE covers every byte with a single-byte token, but the `tokenizers` crate only accepts
//! valid UTF-8. So the input is split into maximal valid UTF-8 runs, which go through the real BPE
//! pipeline, and invalid bytes, each of which becomes the single-byte token of its byte-level character.
//! Decoding never needs the BPE: it is the concatenation of each token's bytes, from a table built once.
//! [`super::Tokenizer::encode`] checks `decode(encode(x)) == x` before returning.
//!
//! Special tokens (`<|endoftext|>`, `<|im_start|>`, ...) are not registered as added tokens, so text
//! that contains their spelling is tokenized as ordinary text: the encoder never emits a token the text
//! did not spell out byte for byte.
//!
//! Some vocabularies lack a token for a few byte values (SmolLM2 has none for 21 of them: six ASCII
//! controls and bytes that valid UTF-8 rarely or never contains). Such a byte is written as three tokens,
//! the escape marker (the start token, a special token text never produces) and two hexadecimal digit
//! tokens, high nibble first. Decoding reads the marker back; nothing else ever emits it.

use candle_core::quantized::gguf_file::Content;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use super::bytes::{self, byte_to_char};
use super::{Fingerprint, TokenizerError, metadata_string, metadata_strings};

/// The `tokenizer.ggml.model` of this file.
pub(super) const MODEL: &str = "gpt2";

/// How text is split into words before BPE, as the GGUF's `tokenizer.ggml.pre` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's byte-level rules.
    Gpt2,
    /// Every digit on its own, then GPT-2's rules (llama.cpp's "smollm").
    Smollm,
}

impl PreTokenizer {
    fn parse(name: Option<&str>) -> Result<Self, TokenizerError> {
        match name {
            None | Some("gpt2") | Some("default") => Ok(Self::Gpt2),
            Some("smollm") => Ok(Self::Smollm),
            Some(other) => Err(TokenizerError::UnsupportedPre(other.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Smollm => "smollm",
        }
    }
}

/// A lossless byte-level BPE tokenizer.
pub(super) struct Bpe {
    bpe: tokenizers::Tokenizer,
    /// `token_bytes[id]` is what token `id` stands for.
    token_bytes: Vec<Vec<u8>>,
    /// The single-byte token of each byte value, where the vocabulary has one:
    /// `token_bytes[byte_token[b]] == [b]`. Bytes without one are escaped, so `escape` is `Some` whenever
    /// any entry is `None`; together they make every input encodable.
    byte_token: [Option<u32>; 256],
    escape: Option<Escape>,
    start_token: u32,
    fingerprint: [u8; 32],
}

/// How a byte without a token of its own is written: `marker`, `hex[b >> 4]`, `hex[b & 15]`.
#[derive(Clone, Copy, Debug)]
struct Escape {
    marker: u32,
    /// The tokens spelling `0`-`9`, `a`-`f`.
    hex: [u32; 16],
}

impl Bpe {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let md = &content.metadata;
        let tokens = metadata_strings(content, "tokenizer.ggml.tokens")?;
        let merges = metadata_strings(content, "tokenizer.ggml.merges")?;
        let bos = md.get("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
        Self::new(metadata_string(content, "tokenizer.ggml.pre"), tokens, &merges, bos)
    }

    /// Builds a tokenizer from its parts: the pre-tokenizer name, the tokens in id order, the merge rules
    /// (`"a b"`) in priority order, and the BOS token id if any.
    pub fn new(
        pre: Option<&str>,
        tokens: Vec<String>,
        merges: &[String],
        bos: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        let pre = PreTokenizer::parse(pre)?;
        let fingerprint = fingerprint(MODEL, pre, &tokens, merges);

        let mut pairs = Vec::with_capacity(merges.len());
        for (index, rule) in merges.iter().enumerate() {
            let (a, b) = rule
                .split_once(' ')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
                .ok_or_else(|| TokenizerError::BadMerge { index, rule: rule.clone() })?;
            pairs.push((a.to_string(), b.to_string()));
        }

        let token_bytes: Vec<Vec<u8>> = tokens.iter().map(|t| bytes::token_to_bytes(t)).collect();
        let id_of = |spelled: &str| tokens.iter().position(|t| t == spelled).map(|p| p as u32);
        let mut byte_token = [None; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = id_of(&byte_to_char(b as u8).to_string());
        }
        let start_token =
            id_of("<|endoftext|>").or(bos.filter(|&b| (b as usize) < tokens.len())).unwrap_or(0);
        let escape = match byte_token.iter().position(Option::is_none) {
            None => None,
            Some(missing) => {
                // The marker must be a token BPE never produces from text: a special token, i.e. one
                // whose spelling is not a sequence of single-byte tokens of the alphabet.
                let marker_is_special =
                    tokens.get(start_token as usize).is_some_and(|t| t.chars().count() > 1)
                        && !merges.iter().any(|m| m.replace(' ', "") == tokens[start_token as usize]);
                let mut hex = [0u32; 16];
                for (d, slot) in hex.iter_mut().enumerate() {
                    let digit = char::from_digit(d as u32, 16).expect("d < 16").to_string();
                    *slot = id_of(&digit).ok_or(TokenizerError::MissingByte(missing as u8))?;
                }
                if !marker_is_special {
                    return Err(TokenizerError::MissingByte(missing as u8));
                }
                Some(Escape { marker: start_token, hex })
            }
        };

        let vocab: tokenizers::models::bpe::Vocab =
            tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let byte_level = ByteLevel::new(false, false, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            PreTokenizer::Gpt2 => byte_level.into(),
            PreTokenizer::Smollm => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        };
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        Ok(Self { bpe: tokenizer, token_bytes, byte_token, escape, start_token, fingerprint })
    }

    /// The tokens of `bytes`; any byte string is accepted and the result always decodes back to it.
    pub fn encode(&self, bytes: &[u8]) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(bytes.len() / 3 + 4);
        for piece in bytes.utf8_chunks() {
            let valid = piece.valid();
            // Characters containing a byte without a token cannot go through BPE; they split the run.
            let mut run = 0;
            for (at, ch) in valid.char_indices() {
                let mut utf8 = [0u8; 4];
                let ch_bytes = ch.encode_utf8(&mut utf8).as_bytes();
                if ch_bytes.iter().any(|&b| self.byte_token[b as usize].is_none()) {
                    self.encode_run(&valid[run..at], &mut ids)?;
                    ch_bytes.iter().for_each(|&b| self.push_byte(b, &mut ids));
                    run = at + ch.len_utf8();
                }
            }
            self.encode_run(&valid[run..], &mut ids)?;
            piece.invalid().iter().for_each(|&b| self.push_byte(b, &mut ids));
        }
        Ok(ids)
    }

    fn encode_run(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if !text.is_empty() {
            let encoding =
                self.bpe.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
            ids.extend_from_slice(encoding.get_ids());
        }
        Ok(())
    }

    /// One byte outside BPE: its own token, or the escape sequence.
    fn push_byte(&self, b: u8, ids: &mut Vec<u32>) {
        match (self.byte_token[b as usize], self.escape) {
            (Some(t), _) => ids.push(t),
            (None, Some(e)) => ids.extend([e.marker, e.hex[(b >> 4) as usize], e.hex[(b & 15) as usize]]),
            (None, None) => unreachable!("the constructor guarantees an escape when a byte has no token"),
        }
    }

    /// Appends the bytes of `tokens` to `out`. A malformed escape or an id beyond the vocabulary cannot
    /// come from a valid archive; they are skipped here and caught by the chunk checksum.
    pub fn decode_into(&self, tokens: &[u32], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < tokens.len() {
            if let Some(e) = self.escape.filter(|e| e.marker == tokens[i]) {
                let nibble = |t: Option<&u32>| t.and_then(|t| e.hex.iter().position(|h| h == t));
                if let (Some(hi), Some(lo)) = (nibble(tokens.get(i + 1)), nibble(tokens.get(i + 2))) {
                    out.push((hi as u8) << 4 | lo as u8);
                }
                i += 3;
                continue;
            }
            if let Some(b) = self.token_bytes.get(tokens[i] as usize) {
                out.extend_from_slice(b);
            }
            i += 1;
        }
    }

    /// The bytes token `id` stands for (empty for an id beyond the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The token every chunk's first window starts from: `<|endoftext|>` (a document boundary, the
    /// context models are trained to start a text after) if present, else BOS, else 0.
    pub fn start_token(&self) -> u32 {
        self.start_token
    }

    /// sha256 of the tokenizer's definition; see [`fingerprint`].
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

/// sha256 over a canonical serialization of everything that decides the token ids (see
/// [`Fingerprint`] for the framing): the model kind and the pre-tokenizer name, then the token count and
/// every token, then the merge count and every merge rule. Recorded in archives so a decoder notices a
/// different tokenizer before decoding; archives written so far hold it, so it must never change.
pub fn fingerprint(model: &str, pre: PreTokenizer, tokens: &[String], merges: &[String]) -> [u8; 32] {
    let mut h = Fingerprint::new();
    h.put(model);
    h.put(pre.name());
    h.put(&tokens.len().to_string());
    for t in tokens {
        h.put(t);
    }
    h.put(&merges.len().to_string());
    for m in merges {
        h.put(m);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary: a special token, the 256 byte characters, and merges for "th", "the", " the".
    fn tiny() -> Bpe {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
        tokens.extend((0..=255u8).map(|b| byte_to_char(b).to_string()));
        let g = byte_to_char(b' ');
        tokens.extend(["th".to_string(), "the".to_string(), format!("{g}the")]);
        let merges = vec!["t h".to_string(), "th e".to_string(), format!("{g} the")];
        Bpe::new(Some("smollm"), tokens, &merges, None).unwrap()
    }

    #[test]
    fn round_trips_any_bytes_with_a_tiny_vocabulary() {
        let t = tiny();
        for input in [&b""[..], b"the cat", b"\xff\xfe\x00 the 123", "é日本".as_bytes(), b"\xe2\x82"] {
            let ids = t.encode(input).unwrap();
            let mut back = Vec::new();
            t.decode_into(&ids, &mut back);
            assert_eq!(back, input);
        }
        assert_eq!(t.start_token(), 0);
    }

    #[test]
    fn digits_are_split_and_merges_apply() {
        let t = tiny();
        assert_eq!(t.encode(b"123").unwrap().len(), 3);
        assert_eq!(t.encode(b"the").unwrap(), vec![258]);
    }

    #[test]
    fn special_token_spelling_is_ordinary_text() {
        let t = tiny();
        let ids = t.encode(b"<|endoftext|>").unwrap();
        assert!(!ids.contains(&0), "{ids:?}");
    }

    #[test]
    fn unsupported_pre_tokenizers_are_named() {
        let e = Bpe::new(Some("qwen2"), vec![], &[], None).err().unwrap();
        assert!(e.to_string().contains("'qwen2'"));
    }
}
