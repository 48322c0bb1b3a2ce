//! What several fuzz targets share: repairing an archive's checksums so mutations reach the checks
//! behind them, and the synthetic model file the decode target decodes with.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

fn put_crc(d: &mut [u8], body: std::ops::Range<usize>, at: usize) {
    if body.end <= d.len() && at + 4 <= d.len() {
        let crc = crc32fast::hash(&d[body]);
        d[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn u32_at(d: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// A varint at `*at` (FORMAT.md), read leniently: `None` past the end or beyond ten bytes.
fn varint_at(d: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *d.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Recomputes every CRC-32 an archive's structure (FORMAT.md) leads to, walking it leniently: the header's,
/// each chunk header's and payload's (and a stored chunk's original-bytes CRC), the index's and the
/// footer's, or version 3's chunk and trailer CRCs, for every archive of a concatenation. Without this,
/// almost every mutation stops at the first checksum and the code behind it is never reached.
/// Whole-content CRCs are left as they are.
pub fn repair_crcs(d: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 13 <= d.len() && d[pos..pos + 8] == llmzip::container::MAGIC {
        if d[pos + 8] == 3 {
            match repair_compact(d, pos) {
                Some(end) => {
                    pos = end;
                    continue;
                }
                None => return,
            }
        }
        let id_len = d[pos + 12] as usize;
        let header_len = match d[pos + 8] {
            2 => 108 + id_len + *d.get(pos + 107 + id_len).unwrap_or(&0) as usize,
            _ => 106 + id_len,
        };
        put_crc(d, pos..pos + header_len - 4, pos + header_len - 4);
        pos += header_len;
        loop {
            let Some(&kind) = d.get(pos) else { return };
            if kind == 0xFF {
                let Some(count) = d.get(pos + 1..pos + 9).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                else {
                    return;
                };
                let Some(len) = count.checked_mul(13).and_then(|n| n.checked_add(13)) else { return };
                let len = len.min(d.len() as u64) as usize;
                let Some(end) = pos.checked_add(len).filter(|&e| e <= d.len()) else { return };
                put_crc(d, pos..end - 4, end - 4);
                put_crc(d, end..end + 24, end + 24);
                pos = end + 32;
                break;
            }
            if pos + 21 > d.len() {
                return;
            }
            let Some(payload) = u32_at(d, pos + 9) else { return };
            let start = pos + 21;
            let Some(end) = start.checked_add(payload).filter(|&e| e + 4 <= d.len()) else {
                put_crc(d, pos..pos + 17, pos + 17);
                return;
            };
            if kind == 0 {
                let crc = crc32fast::hash(&d[start..end]);
                d[pos + 13..pos + 17].copy_from_slice(&crc.to_le_bytes());
            }
            put_crc(d, pos..pos + 17, pos + 17);
            put_crc(d, start..end, end);
            pos = end + 4;
        }
    }
}

/// [`repair_crcs`] for the version-3 archive at `pos`; returns where it ends.
fn repair_compact(d: &mut [u8], pos: usize) -> Option<usize> {
    let mut at = pos + 13 + d[pos + 12] as usize + 48;
    varint_at(d, &mut at)?;
    at += 1;
    for _ in 0..4 {
        varint_at(d, &mut at)?;
    }
    at += 1;
    at += 1 + *d.get(at)? as usize;
    put_crc(d, pos..at, at);
    at += 4;
    loop {
        let start = at;
        let kind = *d.get(at)?;
        at += 1;
        if kind == 0xFF {
            varint_at(d, &mut at)?;
            put_crc(d, start..at + 4, at + 4);
            return Some(at + 8);
        }
        varint_at(d, &mut at)?;
        varint_at(d, &mut at)?;
        let payload = varint_at(d, &mut at)? as usize;
        let body = at + 4;
        let end = body.checked_add(payload).filter(|&e| e + 4 <= d.len())?;
        if kind == 0 {
            let crc = crc32fast::hash(&d[body..end]);
            d[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        }
        put_crc(d, start..end, end);
        at = end + 4;
    }
}

/// The synthetic model the decode corpus was made with (`write_synthetic_llama(_, 1)`, under the file
/// name the archives' headers carry), written once per process.
pub fn synthetic_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("llmzip-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("synthetic-a.gguf");
        llmzip::engine::synthetic::write_synthetic_llama(&path, 1, llmzip::tokenizer::byte_to_char)
            .expect("write synthetic model");
        path
    })
    .clone()
}
