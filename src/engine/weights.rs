//! Conversion of GGUF tensors into the engine's block layout ([`QMatrix`]), once, at load.
//!
//! Why convert instead of running on the file's blocks: one layout means one kernel per path to write,
//! test and keep bit-identical, whatever the file's mix of types. The common 4- and 8-bit types convert
//! exactly (the engine sees the same weight values as any GGUF reader):
//! - Q4_0 `d*(q-8)` becomes nibbles `q` with minimum `-8d` (exact: both terms share the scale `d`);
//! - Q4_1 `d*q + m` keeps its nibbles, scale and minimum;
//! - Q8_0 `d*q` keeps its int8 values and scale;
//! - Q4_K becomes one 32-block per sub-block with scale `d*sc` and minimum `-(dmin*mn)` (both products
//!   of an f16 and a 6-bit integer, exact in f32).
//!
//! Every other type (Q5_*, Q6_K, Q2_K, Q3_K, Q5_K, Q8_K, F16, BF16, F32) is dequantized with candle and
//! requantized to int8 blocks by [`QMatrix::quantize_i8`]: lossy, but a fixed function of the file.

use std::io::Cursor;

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo};
use half::f16;

use super::EngineError;
use super::kernels::{BLOCK, QMatrix};

/// Reads tensors of one GGUF file: the parsed header and the whole file's bytes (usually a memory map).
pub(crate) struct TensorSource<'a> {
    pub content: &'a Content,
    pub file: &'a [u8],
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

impl<'a> TensorSource<'a> {
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn info(&self, name: &str) -> Result<&'a TensorInfo, EngineError> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor { name: name.to_string() })
    }

    /// The tensor's shape, outermost dimension first (for a weight matrix: `[outputs, inputs]`).
    pub fn dims(&self, name: &str) -> Result<Vec<usize>, EngineError> {
        Ok(self.info(name)?.shape.dims().to_vec())
    }

    /// The tensor's raw bytes, bounds-checked against the file.
    fn raw(&self, name: &str, info: &TensorInfo) -> Result<&'a [u8], EngineError> {
        let elems = info.shape.elem_count();
        let bs = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(bs) {
            return Err(EngineError::TensorShape {
                name: name.to_string(),
                seen: format!("{:?}", info.shape.dims()),
                expected: format!("a multiple of {bs} elements for {:?}", info.ggml_dtype),
            });
        }
        let size = (elems / bs * info.ggml_dtype.type_size()) as u64;
        let start = self.content.tensor_data_offset.saturating_add(info.offset);
        let end = start.saturating_add(size);
        if end > self.file.len() as u64 {
            return Err(EngineError::TensorOutOfFile {
                name: name.to_string(),
                start,
                end,
                file_len: self.file.len(),
            });
        }
        Ok(&self.file[start as usize..end as usize])
    }

    /// Dequantizes any tensor to f32 with candle (the path for types without an exact conversion).
    fn dequantize(&self, name: &str) -> Result<Vec<f32>, EngineError> {
        let err =
            |e: candle_core::Error| EngineError::Candle { name: name.to_string(), message: e.to_string() };
        let q = self.content.tensor(&mut Cursor::new(self.file), name, &Device::Cpu).map_err(err)?;
        q.dequantize(&Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(err)
    }

    /// A weight matrix `[rows = outputs][cols = inputs]`, checked against the expected shape.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, EngineError> {
        let info = self.info(name)?;
        let dims = info.shape.dims();
        if dims != [rows, cols] {
            return Err(EngineError::TensorShape {
                name: name.to_string(),
                seen: format!("{dims:?} (outputs, inputs)"),
                expected: format!("[{rows}, {cols}]"),
            });
        }
        if !cols.is_multiple_of(BLOCK) {
            return Err(EngineError::UnsupportedShape {
                what: format!("tensor '{name}' has {cols} inputs, not a multiple of {BLOCK}"),
            });
        }
        let blocks = rows * cols / BLOCK;
        match info.ggml_dtype {
            GgmlDType::Q4_0 => {
                let raw = self.raw(name, info)?;
                let mut nib = Vec::with_capacity(blocks * 16);
                let mut scale = Vec::with_capacity(blocks);
                let mut min = Vec::with_capacity(blocks);
                for b in raw.chunks_exact(18) {
                    let d = f16_at(b, 0);
                    scale.push(d);
                    min.push(-8.0 * d);
                    nib.extend_from_slice(&b[2..18]);
                }
                QMatrix::from_u4(rows, cols, nib, scale, min)
            }
            GgmlDType::Q4_1 => {
                let raw = self.raw(name, info)?;
                let mut nib = Vec::with_capacity(blocks * 16);
                let mut scale = Vec::with_capacity(blocks);
                let mut min = Vec::with_capacity(blocks);
                for b in raw.chunks_exact(20) {
                    scale.push(f16_at(b, 0));
                    min.push(f16_at(b, 2));
                    nib.extend_from_slice(&b[4..20]);
                }
                QMatrix::from_u4(rows, cols, nib, scale, min)
            }
            GgmlDType::Q8_0 => {
                let raw = self.raw(name, info)?;
                let mut values = Vec::with_capacity(blocks * BLOCK);
                let mut scale = Vec::with_capacity(blocks);
                for b in raw.chunks_exact(34) {
                    scale.push(f16_at(b, 0));
                    values.extend(b[2..34].iter().map(|&v| v as i8));
                }
                QMatrix::from_i8(rows, cols, values, scale)
            }
            GgmlDType::Q4K => {
                let raw = self.raw(name, info)?;
                let mut nib = Vec::with_capacity(blocks * 16);
                let mut scale = Vec::with_capacity(blocks);
                let mut min = Vec::with_capacity(blocks);
                for sb in raw.chunks_exact(144) {
                    convert_q4k(sb, &mut nib, &mut scale, &mut min);
                }
                QMatrix::from_u4(rows, cols, nib, scale, min)
            }
            GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
            | GgmlDType::Q5_0
            | GgmlDType::Q5_1
            | GgmlDType::Q8_1
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
            | GgmlDType::Q8K => {
                // Bounds check first so a truncated file gives our error, not candle's.
                self.raw(name, info)?;
                let values = self.dequantize(name)?;
                QMatrix::quantize_i8(rows, cols, &values)
            }
        }
    }

    /// A vector of `len` f32 (norm weights): F32 read as is, anything else dequantized with candle.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, EngineError> {
        let info = self.info(name)?;
        let dims = info.shape.dims();
        if dims != [len] {
            return Err(EngineError::TensorShape {
                name: name.to_string(),
                seen: format!("{dims:?}"),
                expected: format!("[{len}]"),
            });
        }
        let raw = self.raw(name, info)?;
        match info.ggml_dtype {
            GgmlDType::F32 => {
                Ok(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            }
            _ => self.dequantize(name),
        }
    }
}

/// One Q4_K super-block (256 values: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of
/// nibbles) as 8 engine blocks. In the file, each 32 bytes of nibbles hold two sub-blocks: the low nibbles
/// are sub-block 2i, the high nibbles sub-block 2i+1; the engine's block wants element j and j+16 in one
/// byte, so the nibbles are regrouped.
fn convert_q4k(sb: &[u8], nib: &mut Vec<u8>, scale: &mut Vec<f32>, min: &mut Vec<f32>) {
    let d = f16_at(sb, 0);
    let dmin = f16_at(sb, 2);
    let sc = &sb[4..16];
    let qs = &sb[16..144];
    for sub in 0..8 {
        let (s, m) = if sub < 4 {
            (sc[sub] & 63, sc[sub + 4] & 63)
        } else {
            ((sc[sub + 4] & 0x0F) | ((sc[sub - 4] >> 6) << 4), (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4))
        };
        scale.push(d * s as f32);
        min.push(-(dmin * m as f32));
        let bytes = &qs[(sub / 2) * 32..(sub / 2) * 32 + 32];
        let value = |j: usize| {
            if sub % 2 == 0 { bytes[j] & 0x0F } else { bytes[j] >> 4 }
        };
        for j in 0..16 {
            nib.push(value(j) | (value(j + 16) << 4));
        }
    }
}
