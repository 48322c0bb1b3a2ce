//! Typed access to GGUF metadata, for the keys an architecture reads (`{arch}.embedding_length`, ...).
//!
//! GGUF writers pick integer and float widths freely (u32 here, u64 there), so every getter accepts any
//! width that holds the value and names the full key in its error.

use candle_core::quantized::gguf_file::{Content, Value};

use crate::engine::EngineError;

/// The key every GGUF names its architecture with.
pub(crate) const ARCHITECTURE_KEY: &str = "general.architecture";

/// The file's `general.architecture`.
pub(crate) fn architecture(content: &Content) -> Result<&str, EngineError> {
    match content.metadata.get(ARCHITECTURE_KEY) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EngineError::BadMetadata {
            key: ARCHITECTURE_KEY.into(),
            seen: format!("{other:?}"),
            expected: "a string".into(),
        }),
        None => Err(EngineError::MissingMetadata { key: ARCHITECTURE_KEY.into() }),
    }
}

/// The metadata of one architecture: `Meta::new(content, "llama").usize("block_count")` reads
/// `llama.block_count`.
pub(crate) struct Meta<'a> {
    content: &'a Content,
    prefix: &'static str,
}

impl<'a> Meta<'a> {
    pub fn new(content: &'a Content, prefix: &'static str) -> Self {
        Meta { content, prefix }
    }

    /// The full key of `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The raw value of `name`, if present.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        self.content.metadata.get(&self.key(name))
    }

    pub fn has(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    fn get(&self, name: &str) -> Result<&'a Value, EngineError> {
        self.value(name).ok_or_else(|| EngineError::MissingMetadata { key: self.key(name) })
    }

    pub fn usize(&self, name: &str) -> Result<usize, EngineError> {
        let v = self.get(name)?;
        let n: Option<u64> = match *v {
            Value::U8(x) => Some(x as u64),
            Value::U16(x) => Some(x as u64),
            Value::U32(x) => Some(x as u64),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| EngineError::BadMetadata {
            key: self.key(name),
            seen: format!("{v:?}"),
            expected: "a non-negative integer".into(),
        })
    }

    pub fn usize_or(&self, name: &str, default: usize) -> Result<usize, EngineError> {
        if self.has(name) { self.usize(name) } else { Ok(default) }
    }

    pub fn f64(&self, name: &str) -> Result<f64, EngineError> {
        match *self.get(name)? {
            Value::F32(x) => Ok(x as f64),
            Value::F64(x) => Ok(x),
            ref v => Err(EngineError::BadMetadata {
                key: self.key(name),
                seen: format!("{v:?}"),
                expected: "a float".into(),
            }),
        }
    }

    pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, EngineError> {
        if self.has(name) { self.f64(name) } else { Ok(default) }
    }

    /// A string value, if present and a string (`None` when absent).
    pub fn str(&self, name: &str) -> Option<&'a str> {
        match self.value(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}
