//! Bytes <-> tokens, built from a GGUF file's own tokenizer description, lossless on any input.
//!
//! The model predicts tokens, so the compressor must turn *any* byte string into tokens and back without
//! loss. [`Tokenizer`] is the one type the rest of the program sees; it picks the implementation the
//! GGUF's `tokenizer.ggml.model` names:
//! - `gpt2`: byte-level BPE as SmolLM2 uses it ([`bpe`]), with GPT-2's byte alphabet ([`bytes`]);
//! - `llama`: SentencePiece BPE as Gemma uses it ([`sentencepiece`]), with byte-fallback tokens.
//!
//! Every implementation is lossless on any bytes ([`Tokenizer::encode`] checks it on every call) and
//! has a fingerprint, a sha256 of everything that decides its token ids, which archives record.

use candle_core::quantized::gguf_file::{Content, Value};
use sha2::{Digest, Sha256};

mod bpe;
mod bytes;
mod sentencepiece;

pub use bpe::{PreTokenizer, fingerprint};
pub use bytes::{byte_to_char, char_to_byte};
pub use sentencepiece::{SentencePieceVocab, fingerprint as sentencepiece_fingerprint};

/// Why a tokenizer could not be built or could not encode.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata key '{key}' is missing or not {expected}; the file has no usable tokenizer")]
    Metadata { key: &'static str, expected: &'static str },
    #[error(
        "tokenizer model '{0}' is not supported: llmzip reads byte-level BPE ('gpt2') and SentencePiece ('llama') tokenizers; pick a model with one"
    )]
    UnsupportedModel(String),
    #[error(
        "Tokenizer::new builds byte-level BPE ('gpt2') tokenizers, not '{0}'; build SentencePiece ('llama') with Tokenizer::sentencepiece"
    )]
    NotBpe(String),
    #[error(
        "GGUF metadata '{key}' has {len} entries but tokenizer.ggml.tokens has {tokens}; the tokenizer description is malformed"
    )]
    LengthMismatch { key: &'static str, len: usize, tokens: usize },
    #[error(
        "GGUF metadata '{key}' is {id}, beyond the {tokens} tokens of the vocabulary; the tokenizer description is malformed"
    )]
    IdOutOfRange { key: &'static str, id: u32, tokens: usize },
    #[error("the vocabulary has {0} tokens or more bytes of them than token ids (u32) can address")]
    TooManyTokens(usize),
    #[error(
        "token {id} has type {ty}, not one of SentencePiece's 1..6 (normal .. byte); the tokenizer description is malformed"
    )]
    UnknownTokenType { id: u32, ty: i32 },
    #[error(
        "token {id} is a byte token but spelled '{piece}', not <0xHH>; the tokenizer description is malformed"
    )]
    BadByteToken { id: u32, piece: String },
    #[error(
        "byte 0x{byte:02X} has two byte tokens, {first} and {second}; the tokenizer description is malformed"
    )]
    DuplicateByteToken { byte: u8, first: u32, second: u32 },
    #[error(
        "the SentencePiece vocabulary has no byte token <0x{0:02X}>, so not every input can be encoded; pick a model whose tokenizer has byte fallback"
    )]
    MissingByteToken(u8),
    #[error(
        "token {id} ('{piece}') has a NaN score, so merges have no order; the tokenizer description is malformed"
    )]
    NanScore { id: u32, piece: String },
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

/// The implementations, one per `tokenizer.ggml.model`.
enum Kind {
    // Boxed: both hold kilobytes of inline tables (byte maps); a Tokenizer is cheap to move.
    Bpe(Box<bpe::Bpe>),
    SentencePiece(Box<sentencepiece::SentencePiece>),
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
        let kind = match model {
            bpe::MODEL => Kind::Bpe(Box::new(bpe::Bpe::from_gguf(content)?)),
            sentencepiece::MODEL => {
                Kind::SentencePiece(Box::new(sentencepiece::SentencePiece::from_gguf(content)?))
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        Ok(Tokenizer { kind })
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
        match model {
            bpe::MODEL => {
                Ok(Tokenizer { kind: Kind::Bpe(Box::new(bpe::Bpe::new(pre, tokens, merges, bos)?)) })
            }
            sentencepiece::MODEL => Err(TokenizerError::NotBpe(model.to_string())),
            other => Err(TokenizerError::UnsupportedModel(other.to_string())),
        }
    }

    /// Builds a SentencePiece tokenizer (`llama`) from its vocabulary.
    pub fn sentencepiece(vocab: &SentencePieceVocab) -> Result<Self, TokenizerError> {
        Ok(Tokenizer { kind: Kind::SentencePiece(Box::new(sentencepiece::SentencePiece::new(vocab)?)) })
    }

    /// The tokens of `bytes`; any byte string is accepted and the result always decodes back to it
    /// (checked here, so a bug in an implementation is an error, never a corrupt archive).
    pub fn encode(&self, bytes: &[u8]) -> Result<Vec<u32>, TokenizerError> {
        let ids = match &self.kind {
            Kind::Bpe(t) => t.encode(bytes)?,
            Kind::SentencePiece(t) => t.encode(bytes),
        };
        let mut back = Vec::with_capacity(bytes.len());
        self.decode_into(&ids, &mut back);
        if back != bytes {
            let at = back.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(back.len().min(bytes.len()));
            return Err(TokenizerError::NotLossless(at));
        }
        Ok(ids)
    }

    /// Appends the bytes of `tokens` to `out`. A malformed escape or an id beyond the vocabulary cannot
    /// come from a valid archive; they are skipped here and caught by the chunk checksum.
    pub fn decode_into(&self, tokens: &[u32], out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Bpe(t) => t.decode_into(tokens, out),
            Kind::SentencePiece(t) => t.decode_into(tokens, out),
        }
    }

    /// The bytes token `id` stands for (empty for an id beyond the vocabulary).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        match &self.kind {
            Kind::Bpe(t) => t.token_bytes(id),
            Kind::SentencePiece(t) => t.token_bytes(id),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Bpe(t) => t.vocab_size(),
            Kind::SentencePiece(t) => t.vocab_size(),
        }
    }

    /// The token every chunk's first window starts from: for BPE a document boundary (`<|endoftext|>`)
    /// if the vocabulary has one, else BOS, else 0; for SentencePiece BOS (Gemma has no document token).
    pub fn start_token(&self) -> u32 {
        match &self.kind {
            Kind::Bpe(t) => t.start_token(),
            Kind::SentencePiece(t) => t.start_token(),
        }
    }

    /// sha256 of the tokenizer's definition (see [`fingerprint`] and [`sentencepiece_fingerprint`]).
    pub fn fingerprint(&self) -> [u8; 32] {
        match &self.kind {
            Kind::Bpe(t) => t.fingerprint(),
            Kind::SentencePiece(t) => t.fingerprint(),
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
        self.put_bytes(s.as_bytes());
    }

    fn put_bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u32).to_le_bytes());
        self.0.update(b);
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
        assert!(matches!(e, TokenizerError::NotBpe(_)), "{e}");
        assert!(
            e.to_string().contains("'llama'") && e.to_string().contains("Tokenizer::sentencepiece"),
            "{e}"
        );
        let e = Tokenizer::new("rwkv", None, vec![], &[], None).err().unwrap();
        assert!(e.to_string().contains("'rwkv'"), "{e}");
        let e = Tokenizer::new("gpt2", Some("qwen2"), vec![], &[], None).err().unwrap();
        assert!(e.to_string().contains("'qwen2'"));
    }
}
