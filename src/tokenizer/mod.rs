//! Bytes <-> tokens, built from a GGUF file's own tokenizer description, lossless on any input.
//!
//! The model predicts tokens, so the compressor must turn *any* byte string into tokens and back without
//! loss. [`Tokenizer`] is the one type the rest of the program sees; it picks the implementation the
//! GGUF's `tokenizer.ggml.model` names:
//! - `gpt2`: byte-level BPE as SmolLM2 uses it ([`bpe`]), with GPT-2's byte alphabet ([`bytes`]);
//! - `llama`: SentencePiece (Gemma, Llama 2), not built yet; refused with
//!   [`TokenizerError::SentencePieceNotSupported`]. It will sit beside `bpe.rs` as `sentencepiece.rs`.
//!
//! Every implementation is lossless on any bytes (checked on every call) and has a fingerprint, a
//! sha256 of everything that decides its token ids, which archives record.

use candle_core::quantized::gguf_file::{Content, Value};
use sha2::{Digest, Sha256};

mod bpe;
mod bytes;

pub use bpe::{PreTokenizer, fingerprint};
pub use bytes::{byte_to_char, char_to_byte};

/// Why a tokenizer could not be built or could not encode.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata key '{key}' is missing or not {expected}; the file has no usable tokenizer")]
    Metadata { key: &'static str, expected: &'static str },
    #[error(
        "tokenizer model '{0}' is not supported: llmzip reads byte-level BPE tokenizers ('gpt2'); pick a model with one"
    )]
    UnsupportedModel(String),
    #[error(
        "tokenizer model 'llama' (SentencePiece) is not supported yet: llmzip reads byte-level BPE tokenizers ('gpt2') today; pick a model with one"
    )]
    SentencePieceNotSupported,
    #[error(
        "pre-tokenizer '{0}' is not supported (known: smollm, gpt2, default); pick a model with a supported tokenizer"
    )]
    UnsupportedPre(String),
    #[error("merge rule {index} ('{rule}') is not two tokens separated by one space")]
    BadMerge { index: usize, rule: String },
    #[error(
        "the vocabulary has no token for byte 0x{0:02x} and no way to escape it (a special token and hex digit tokens), so not every input can be encoded"
    )]
    MissingByte(u8),
    #[error("building the BPE tokenizer failed: {0}")]
    Build(String),
    #[error("tokenizing failed: {0}")]
    Encode(String),
    #[error(
        "tokenizing is not lossless here: decoding the tokens does not give the input back (first difference at byte {0}); please report this input"
    )]
    NotLossless(usize),
}

/// Which tokenizer a GGUF's `tokenizer.ggml.model` names.
fn kind(model: &str) -> Result<(), TokenizerError> {
    match model {
        bpe::MODEL => Ok(()),
        "llama" => Err(TokenizerError::SentencePieceNotSupported),
        other => Err(TokenizerError::UnsupportedModel(other.to_string())),
    }
}

/// The implementations, one per `tokenizer.ggml.model`.
enum Kind {
    Bpe(bpe::Bpe),
}

/// A lossless tokenizer of the kind the model file describes.
pub struct Tokenizer {
    kind: Kind,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let model = metadata_string(content, "tokenizer.ggml.model")
            .ok_or(TokenizerError::Metadata { key: "tokenizer.ggml.model", expected: "a string" })?;
        kind(model)?;
        Ok(Tokenizer { kind: Kind::Bpe(bpe::Bpe::from_gguf(content)?) })
    }

    /// Builds a byte-level BPE tokenizer from its parts: the model kind (`gpt2`), the pre-tokenizer name,
    /// the tokens in id order, the merge rules (`"a b"`) in priority order, and the BOS token id if any.
    pub fn new(
        model: &str,
        pre: Option<&str>,
        tokens: Vec<String>,
        merges: &[String],
        bos: Option<u32>,
    ) -> Result<Self, TokenizerError> {
        kind(model)?;
        Ok(Tokenizer { kind: Kind::Bpe(bpe::Bpe::new(pre, tokens, merges, bos)?) })
    }

    /// The tokens of `bytes`; any byte string is accepted and the result always decodes back to it.
    pub fn encode(&self, bytes: &[u8]) -> Result<Vec<u32>, TokenizerError> {
        match &self.kind {
            Kind::Bpe(t) => t.encode(bytes),
        }
    }

    /// Appends the bytes of `tokens` to `out`. A malformed escape or an id beyond the vocabulary cannot
    /// come from a valid archive; they are skipped here and caught by the chunk checksum.
    pub fn decode_into(&self, tokens: &[u32], out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Bpe(t) => t.decode_into(tokens, out),
        }
    }

    /// The bytes token `id` stands for (empty for an id beyond the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        match &self.kind {
            Kind::Bpe(t) => t.token_bytes(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Bpe(t) => t.vocab_size(),
        }
    }

    /// The token every chunk's first window starts from: a document boundary (`<|endoftext|>` for BPE)
    /// if the vocabulary has one, else BOS, else 0.
    pub fn start_token(&self) -> u32 {
        match &self.kind {
            Kind::Bpe(t) => t.start_token(),
        }
    }

    /// sha256 of the tokenizer's definition (for BPE see [`fingerprint`]).
    pub fn fingerprint(&self) -> [u8; 32] {
        match &self.kind {
            Kind::Bpe(t) => t.fingerprint(),
        }
    }
}

/// The framing of every tokenizer fingerprint: sha256 over the ASCII text `llmzip tokenizer v1`, then
/// the implementation's fields in its fixed order, each field as u32 LE byte length + UTF-8 bytes
/// (counts are written as their decimal text). The first field is the model kind, so two kinds never
/// share a fingerprint.
struct Fingerprint(Sha256);

impl Fingerprint {
    fn new() -> Self {
        let mut h = Fingerprint(Sha256::new());
        h.put("llmzip tokenizer v1");
        h
    }

    fn put(&mut self, s: &str) {
        self.0.update((s.len() as u32).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// A string value of the GGUF metadata, if present.
fn metadata_string<'a>(content: &'a Content, key: &str) -> Option<&'a str> {
    content.metadata.get(key).and_then(|v| v.to_string().ok()).map(String::as_str)
}

/// An array of strings of the GGUF metadata.
fn metadata_strings(content: &Content, key: &'static str) -> Result<Vec<String>, TokenizerError> {
    let err = || TokenizerError::Metadata { key, expected: "an array of strings" };
    let values = content.metadata.get(key).and_then(|v| v.to_vec().ok()).ok_or_else(err)?;
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(err()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_kinds_are_named() {
        let e = Tokenizer::new("llama", None, vec![], &[], None).err().unwrap();
        assert!(matches!(e, TokenizerError::SentencePieceNotSupported), "{e}");
        assert!(e.to_string().contains("'llama'") && e.to_string().contains("SentencePiece"), "{e}");
        let e = Tokenizer::new("rwkv", None, vec![], &[], None).err().unwrap();
        assert!(e.to_string().contains("'rwkv'"), "{e}");
        let e = Tokenizer::new("gpt2", Some("qwen2"), vec![], &[], None).err().unwrap();
        assert!(e.to_string().contains("'qwen2'"));
    }
}
