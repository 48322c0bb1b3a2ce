//! Opening a GGUF model file: a memory map plus candle's parse of its metadata and tensor directory.
//!
//! The map lets the engine read weights in place (no copy of a multi-hundred-megabyte file) and load
//! only what it converts. Opening also checks that every tensor's data lies inside the file, so later
//! slicing by [`GgufFile::tensor_bytes`] cannot go out of bounds on a truncated download.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo};

use super::error::first_line;
use memmap2::Mmap;

use super::error::ModelError;

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";

/// An open, parsed GGUF file.
pub struct GgufFile {
    path: PathBuf,
    /// The whole file, read-only. Invariant: starts with `GGUF`, and every tensor in `content` has its
    /// data inside it (checked in [`GgufFile::open`]).
    mmap: Mmap,
    content: Content,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.mmap.len())
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses `path`; a file that is not GGUF, or whose directory or tensor data is cut
    /// short, is an error naming the path and what was wrong.
    pub fn open(path: &Path) -> Result<GgufFile, ModelError> {
        let mmap = super::hash::map_file(path).map_err(|e| ModelError::io("open model file", path, e))?;
        Self::from_map(path, mmap)
    }

    /// Parses an already mapped file (the map whose bytes were just hashed, so the file is read once).
    pub fn from_map(path: &Path, mmap: Mmap) -> Result<GgufFile, ModelError> {
        let len = mmap.len();
        if len < 8 {
            return Err(ModelError::NotGguf {
                path: path.to_path_buf(),
                found: format!("it is only {len} bytes long"),
            });
        }
        if &mmap[..4] != MAGIC {
            return Err(ModelError::NotGguf {
                path: path.to_path_buf(),
                found: format!("it starts with {}, not `GGUF`", describe_magic(&mmap[..4])),
            });
        }
        let content = Content::read(&mut Cursor::new(&mmap[..]))
            .map_err(|e| ModelError::Gguf { path: path.to_path_buf(), reason: first_line(&e.to_string()) })?;
        let gguf = GgufFile { path: path.to_path_buf(), mmap, content };
        for (name, info) in &gguf.content.tensor_infos {
            gguf.tensor_range(name, info)?;
        }
        Ok(gguf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata and tensor directory.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// The raw (still quantized) data of one tensor, in the file's block layout.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], ModelError> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| ModelError::Gguf {
            path: self.path.clone(),
            reason: format!("it has no tensor `{name}`"),
        })?;
        let range = self.tensor_range(name, info)?;
        Ok(&self.mmap[range])
    }

    /// Where a tensor's data lies in the file, checked against the file's length.
    fn tensor_range(&self, name: &str, info: &TensorInfo) -> Result<std::ops::Range<usize>, ModelError> {
        let bad = |what: String| ModelError::Gguf {
            path: self.path.clone(),
            reason: format!("tensor `{name}` {what}"),
        };
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if block == 0 || !elems.is_multiple_of(block) {
            return Err(bad(format!("has {elems} elements, not a multiple of its block size {block}")));
        }
        let size = (elems / block)
            .checked_mul(info.ggml_dtype.type_size())
            .ok_or_else(|| bad("is too large".into()))?;
        let start =
            self.content.tensor_data_offset.checked_add(info.offset).and_then(|s| usize::try_from(s).ok());
        let range = start.and_then(|s| s.checked_add(size).map(|e| s..e));
        match range {
            Some(r) if r.end <= self.mmap.len() => Ok(r),
            _ => Err(bad(format!(
                "needs {size} bytes at offset {} + {}, past the end of the {}-byte file",
                self.content.tensor_data_offset,
                info.offset,
                self.mmap.len()
            ))),
        }
    }
}

/// The first bytes of a non-GGUF file, as text if printable, for the error message.
fn describe_magic(head: &[u8]) -> String {
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("`{}`", String::from_utf8_lossy(head))
    } else {
        let bytes: Vec<String> = head.iter().map(|b| crate::hex::encode(&[*b])).collect();
        format!("bytes {}", bytes.join(" "))
    }
}
