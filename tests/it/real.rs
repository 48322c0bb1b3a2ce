//! Round trips with the real default model: what users run, on real text, across kernel paths and
//! thread counts. The model is fetched into the cache on first use.

use std::io::Cursor;

use llmzip::container::{ChunkKind, read_tail};
use llmzip::engine::KernelPath;
use llmzip::io::NoProgress;
use llmzip::pipeline::{CodecOptions, compress, decompress};

use crate::common;

fn opts(threads: usize, kernel: Option<&str>) -> CodecOptions {
    CodecOptions {
        model: Some(common::default_model().to_string_lossy().into_owned()),
        threads,
        kernel: kernel.map(|k| KernelPath::parse(k).expect("a known kernel path")),
        ..CodecOptions::default()
    }
}

fn compress_with(data: &[u8], o: &CodecOptions) -> Vec<u8> {
    let mut archive = Vec::new();
    compress(&mut Cursor::new(data), &mut archive, o, &NoProgress).expect("compress");
    archive
}

fn decompress_with(archive: &[u8], o: &CodecOptions) -> Vec<u8> {
    let mut out = Vec::new();
    decompress(&mut Cursor::new(archive), &mut out, o, &NoProgress).expect("decompress");
    out
}

#[test]
fn twenty_kilobytes_of_english_round_trip_and_shrink() {
    let text = common::sample_text(20_480);
    let mut archive = Vec::new();
    let stats = compress(&mut Cursor::new(&text), &mut archive, &opts(0, None), &NoProgress).unwrap();
    let info = read_tail(&mut Cursor::new(&archive)).unwrap();
    assert!(info.chunks.iter().all(|c| c.kind == ChunkKind::Coded), "English text is model-coded");
    // The coded payloads stay within 0.5% of the model's ideal code length for the same windows, plus
    // 32 bytes per window (the compressor issue's bound; the container's framing comes on top).
    let payload: u64 = info.chunks.iter().map(|c| c.payload_len as u64).sum();
    let ideal_bytes = stats.ideal_bits / 8.0;
    assert!(stats.windows >= 1 && ideal_bytes > 1000.0, "{stats:?}");
    assert!(
        payload as f64 <= 1.005 * ideal_bytes + 32.0 * stats.windows as f64,
        "payload {payload} bytes, ideal {ideal_bytes:.0} bytes over {} windows",
        stats.windows
    );
    assert!(payload as f64 >= ideal_bytes * 0.99, "a payload below the ideal code length is impossible");
    let bits_per_byte = archive.len() as f64 * 8.0 / text.len() as f64;
    // xz -9e needs about 3 bits per byte on this text; the model must do far better.
    assert!(bits_per_byte < 1.6, "{bits_per_byte:.3} bits per byte");
    assert!(decompress_with(&archive, &opts(0, None)) == text);
}

#[test]
fn archives_do_not_depend_on_threads_or_kernel_path() {
    let text = common::sample_text(4096);
    let paths = KernelPath::available();
    let fastest = paths.last().unwrap().name();
    let one = compress_with(&text, &opts(1, Some(fastest)));
    let two = compress_with(&text, &opts(2, Some(fastest)));
    assert!(one == two, "archives made with 1 and 2 threads differ");
    // Encoded with the fastest path on one thread, decoded with the portable scalar kernels on two.
    assert!(decompress_with(&one, &opts(2, Some("scalar"))) == text);
    // Every other SIMD path writes the same archive.
    for path in &paths[1..paths.len().saturating_sub(1)] {
        assert!(compress_with(&text, &opts(2, Some(path.name()))) == one, "{path:?} wrote another archive");
    }
}

#[test]
fn a_flipped_bit_in_a_real_archive_is_always_reported() {
    use llmzip::container::ArchiveReader;
    let text = common::sample_text(3000);
    let archive = compress_with(&text, &opts(0, None));
    // 256 random single-bit flips over the whole archive: each must be caught by a checksum
    // while reading, before any decoding.
    let noise = common::random_bytes(256 * 4, 42);
    for (i, r) in noise.chunks_exact(4).enumerate() {
        let bit = (u32::from_le_bytes(r.try_into().unwrap()) as usize) % (archive.len() * 8);
        let mut damaged = archive.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let read = (|| {
            let mut reader = ArchiveReader::new(Cursor::new(&damaged))?;
            while reader.next_chunk()?.is_some() {}
            Ok::<_, llmzip::container::FormatError>(())
        })();
        assert!(read.is_err(), "flip {i} of bit {bit} was not detected");
    }
    // And through the full decompressor: an error, never wrong output.
    for bit in [3usize, archive.len() * 4, archive.len() * 8 - 9] {
        let mut damaged = archive.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let mut out = Vec::new();
        assert!(decompress(&mut Cursor::new(&damaged), &mut out, &opts(0, None), &NoProgress).is_err());
    }
}
