//! The archive format on its own: exact bytes, and clean failures on every kind of damage.

use std::io::Cursor;

use llmzip::container::{ArchiveReader, ArchiveWriter, ChunkKind, FormatError, Framing, Header, read_tail};

use crate::common;

/// A version-1 header (the indexed framing, no slide, no mixer).
fn header() -> Header {
    Header {
        framing: Framing::Indexed,
        model_id: "test-model".into(),
        model_sha256: [0xab; 32],
        tokenizer_fingerprint: vec![0xcd; 32],
        engine_version: 1,
        precision_bits: 24,
        context: 2048,
        overlap: 256,
        start_token: 0,
        canary: [1, 2, 3, 4, 5, 6, 7, 8],
        slide: 0,
        sink: 0,
        mixer: Vec::new(),
    }
}

/// A version-3 header (the compact framing) with the same settings.
fn header_v3() -> Header {
    Header { framing: Framing::Compact, tokenizer_fingerprint: vec![0xcd; 8], ..header() }
}

/// Headers of every version, for the tests that hold for every framing.
fn every_header() -> [Header; 4] {
    let sliding = |h: Header| Header { overlap: 0, slide: 512, sink: 1, mixer: vec![1; 8], ..h };
    [header(), sliding(header()), header_v3(), sliding(header_v3())]
}

/// A small archive: one stored chunk, one "coded" chunk (the container does not interpret payloads).
fn tiny_archive() -> Vec<u8> {
    tiny_archive_with(&header())
}

fn tiny_archive_with(header: &Header) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), header).unwrap();
    w.write_chunk(ChunkKind::Stored, b"hello", 0, b"hello").unwrap();
    w.write_chunk(ChunkKind::Coded, b"world!", 3, &[9, 8, 7, 6]).unwrap();
    w.finish().unwrap()
}

/// Reads a whole archive the way the decoder does, feeding back the original bytes (taken from the
/// stored payloads, or the known text for the coded chunk).
fn read_all(bytes: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    let mut r = ArchiveReader::new(Cursor::new(bytes))?;
    let mut chunks = Vec::new();
    let mut index = 0;
    while let Some(c) = r.next_chunk()? {
        let original: Vec<u8> = match c.kind {
            ChunkKind::Stored => c.payload.clone(),
            ChunkKind::Coded => b"world!".to_vec(),
        };
        c.verify_original(index, &original)?;
        r.note_original(&original);
        chunks.push(c.payload);
        index += 1;
    }
    let (len, _) = r.finish()?;
    assert_eq!(len, bytes.len() as u64);
    Ok(chunks)
}

#[test]
fn round_trip_and_listing() {
    for h in every_header() {
        let bytes = tiny_archive_with(&h);
        let chunks = read_all(&bytes).unwrap();
        assert_eq!(chunks, vec![b"hello".to_vec(), vec![9, 8, 7, 6]]);
        let info = read_tail(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(info.header, h);
        assert_eq!(info.total_original, 11);
        assert_eq!(info.chunks.len(), 2);
        assert_eq!(info.archive_bytes, bytes.len() as u64);
    }
}

/// Version 3 is pinned like version 1 (below); the CRCs were computed independently (Python's
/// zlib.crc32) from FORMAT.md when this was written. 128 bytes where version 1 takes 238.
#[test]
fn golden_bytes_v3() {
    let hex: String = llmzip::hex::encode(&tiny_archive_with(&header_v3()));
    assert_eq!(
        hex,
        concat!(
            // header: magic, version 3, flags 0, id "test-model", sha256, tokenizer check, canary
            "894c4c4d5a0d0a1a",
            "0300",
            "0000",
            "0a",
            "746573742d6d6f64656c",
            "abababababababababababababababababababababababababababababababab",
            "cdcdcdcdcdcdcdcd",
            "0102030405060708",
            // engine 1, precision 24, context 2048, overlap 256, start 0, slide 0, sink 0, no mixer
            "01",
            "18",
            "8010",
            "8002",
            "00",
            "00",
            "00",
            "00",
            "78a28531",
            // chunk 0: stored, 5 bytes, 0 tokens, 5-byte payload, original CRC, payload, chunk CRC
            "00",
            "05",
            "00",
            "05",
            "86a61036",
            "68656c6c6f",
            "fd445c4d",
            // chunk 1: coded, 6 bytes, 3 tokens, 4-byte payload
            "01",
            "06",
            "03",
            "04",
            "e8988471",
            "09080706",
            "b21ea6a6",
            // trailer: marker, 2 chunks, content CRC, trailer CRC
            "ff",
            "02",
            "a6cbf536",
            "16e64d7c",
        )
    );
}

/// The format is pinned: a change to these bytes is a format change and needs a new version. The CRCs
/// were computed independently (Python's zlib.crc32) when this was written.
#[test]
fn golden_bytes() {
    let hex: String = llmzip::hex::encode(&tiny_archive());
    assert_eq!(
        hex,
        concat!(
            // header: magic, version 1, flags 0, id "test-model"
            "894c4c4d5a0d0a1a",
            "0100",
            "0000",
            "0a",
            "746573742d6d6f64656c",
            "abababababababababababababababababababababababababababababababab",
            "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
            "01000000",
            "18",
            "00080000",
            "00010000",
            "00000000",
            "0102030405060708",
            "6a846576",
            // chunk 0: stored "hello"
            "00",
            "05000000",
            "00000000",
            "05000000",
            "86a61036",
            "326de96b",
            "68656c6c6f",
            "86a61036",
            // chunk 1: coded, 6 bytes, 3 tokens, 4-byte payload
            "01",
            "06000000",
            "03000000",
            "04000000",
            "e8988471",
            "6a132a76",
            "09080706",
            "dcf27df4",
            // index: marker, count 2, entries, crc
            "ff",
            "0200000000000000",
            "00",
            "05000000",
            "05000000",
            "00000000",
            "01",
            "06000000",
            "04000000",
            "03000000",
            "6f4a66d8",
            // footer: total 11, 2 chunks, content crc, index length 39, crc, "LMZE"
            "0b00000000000000",
            "0200000000000000",
            "a6cbf536",
            "27000000",
            "a40d915a",
            "4c4d5a45",
        )
    );
}

#[test]
fn every_truncation_fails_cleanly() {
    for h in every_header() {
        truncations_fail_cleanly(&tiny_archive_with(&h));
    }
}

fn truncations_fail_cleanly(bytes: &[u8]) {
    for len in 0..bytes.len() {
        let err = read_all(&bytes[..len]).expect_err("a truncated archive must not read");
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
        if len >= 8 {
            assert!(matches!(err, FormatError::Truncated { .. }), "cut at {len}: {msg}");
        }
        let _ = read_tail(&mut Cursor::new(&bytes[..len])).expect_err("a truncated tail must not list");
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for h in every_header() {
        let bytes = tiny_archive_with(&h);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(read_all(&damaged).is_err(), "v{}: flipping bit {bit} went unnoticed", h.version());
            assert!(read_tail(&mut Cursor::new(&damaged)).is_err(), "v{}: bit {bit} listed", h.version());
        }
    }
}

#[test]
fn huge_lengths_are_rejected_before_allocating() {
    // A chunk header claiming a 4 GiB payload, with a correct header CRC: rejected by its limits.
    let mut bytes = header().to_bytes().unwrap();
    let mut chunk = vec![1u8];
    chunk.extend_from_slice(&u32::MAX.to_le_bytes()); // original length
    chunk.extend_from_slice(&u32::MAX.to_le_bytes()); // tokens
    chunk.extend_from_slice(&u32::MAX.to_le_bytes()); // payload length
    chunk.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&chunk);
    chunk.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&chunk);
    let err = read_all(&bytes).unwrap_err();
    assert!(matches!(err, FormatError::Chunk { chunk: 0, .. }), "{err}");
    // A footer claiming 2^60 chunks is rejected by the footer's own consistency check.
    let mut archive = tiny_archive();
    let n = archive.len();
    archive[n - 24..n - 16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let crc = crc32fast::hash(&archive[n - 32..n - 8]);
    archive[n - 8..n - 4].copy_from_slice(&crc.to_le_bytes());
    assert!(read_tail(&mut Cursor::new(&archive)).is_err());

    // Version 3: lengths of 2^32 - 1 (5-byte varints), refused by their limits before the payload (and
    // the chunk CRC after it) is read.
    let mut bytes = header_v3().to_bytes().unwrap();
    bytes.push(1);
    for _ in 0..3 {
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    }
    bytes.extend_from_slice(&[0; 4]);
    let err = read_all(&bytes).unwrap_err();
    assert!(matches!(err, FormatError::Chunk { chunk: 0, .. }), "{err}");
    // A varint that never ends, and one not in its shortest form, are refused too.
    for bad in [vec![0x80; 12], vec![0x85, 0x00]] {
        let mut bytes = header_v3().to_bytes().unwrap();
        bytes.push(1);
        bytes.extend_from_slice(&bad);
        let err = read_all(&bytes).unwrap_err();
        assert!(matches!(err, FormatError::Chunk { chunk: 0, .. }), "{err}");
    }
    // A trailer claiming 2^60 chunks, with a valid CRC: refused by the count of chunks read.
    let mut archive = tiny_archive_with(&header_v3());
    archive.truncate(archive.len() - 10);
    let mut trailer = vec![0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    trailer.extend_from_slice(&crc32(b"helloworld!").to_le_bytes());
    let crc = crc32(&trailer);
    trailer.extend_from_slice(&crc.to_le_bytes());
    archive.extend_from_slice(&trailer);
    let err = read_all(&archive).unwrap_err();
    assert!(matches!(err, FormatError::Trailer(_)), "{err}");
    assert!(read_tail(&mut Cursor::new(&archive)).is_err());
}

#[test]
fn other_formats_are_named() {
    let cases: [(&[u8], &str); 6] = [
        (b"LZIP\x01\x0c\x00\x00\x00\x00\x00\x00\x00\x00", "lzip"),
        (b"\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4\x46", "xz"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "gzip"),
        (b"\x28\xb5\x2f\xfd\x00\x00\x00\x00\x00\x00", "zstd"),
        (b"BZh91AY&SY\x00\x00", "bzip2"),
        (b"plain text, not an archive", "not an llmzip archive"),
    ];
    for (bytes, name) in cases {
        let err = ArchiveReader::new(Cursor::new(bytes)).err().expect("not an archive");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    assert!(matches!(ArchiveReader::new(Cursor::new(b"")).err(), Some(FormatError::Empty)));
}

#[test]
fn random_mutations_never_panic() {
    for h in every_header() {
        mutations_never_panic(&tiny_archive_with(&h));
    }
}

fn mutations_never_panic(bytes: &[u8]) {
    let noise = common::random_bytes(4 * 3000, 99);
    for case in 0..3000 {
        let r = &noise[case * 4..case * 4 + 4];
        let mut damaged = bytes.to_vec();
        match r[0] % 3 {
            0 => damaged[r[1] as usize % bytes.len()] = r[2],
            1 => damaged.truncate(r[1] as usize % bytes.len()),
            _ => damaged.insert(r[1] as usize % bytes.len(), r[2]),
        }
        let _ = read_all(&damaged);
        let _ = read_tail(&mut Cursor::new(&damaged));
    }
    for case in 0..500u64 {
        let junk = common::random_bytes((case as usize * 37) % 400, case);
        let _ = read_all(&junk);
        let mut with_magic = llmzip::container::MAGIC.to_vec();
        with_magic.extend_from_slice(&junk);
        let _ = read_all(&with_magic);
    }
}

/// A header of format version 2: a sliding cache and a mixer configuration.
fn header_v2() -> Header {
    Header { overlap: 0, slide: 512, sink: 1, mixer: vec![2, 7, 1, 9], ..header() }
}

#[test]
fn version_3_headers_round_trip_at_every_setting() {
    for h in every_header().into_iter().skip(2) {
        let bytes = h.to_bytes().unwrap();
        assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
        let (back, len) = Header::read_from(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!((back, len), (h.clone(), bytes.len()));
        for len in 0..bytes.len() {
            assert!(Header::read_from(&mut Cursor::new(&bytes[..len])).is_err(), "cut at {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::read_from(&mut Cursor::new(&damaged)).is_err(), "flipping bit {bit}");
        }
    }
    // The fingerprint's length is the framing's: a header with another is refused, not cut.
    let err = Header { tokenizer_fingerprint: vec![0; 32], ..header_v3() }.to_bytes().unwrap_err();
    assert!(err.to_string().contains("tokenizer fingerprint of 32 bytes"), "{err}");
    // The default header, 146 bytes in version 2, is 37 bytes shorter in version 3.
    let default = |h: Header| Header {
        model_id: "smollm2-135m-instruct-q4_1".into(),
        context: 2048,
        overlap: 0,
        slide: 512,
        sink: 1,
        start_token: 1,
        mixer: vec![1, 3, 63, 15, 5, 6, 5, 4],
        ..h
    };
    assert_eq!(default(header()).to_bytes().unwrap().len(), 146);
    assert_eq!(default(header_v3()).to_bytes().unwrap().len(), 109);
}

#[test]
fn version_2_headers_round_trip_and_version_1_stays_version_1() {
    let v1 = header().to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1, "no slide, no mixer: written as version 1");
    let v2 = header_v2().to_bytes().unwrap();
    assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), 2);
    assert_eq!(v2.len(), v1.len() + 6 + 4);
    let (back, len) = Header::read_from(&mut Cursor::new(&v2)).unwrap();
    assert_eq!((back, len), (header_v2(), v2.len()));
    let (back, _) = Header::read_from(&mut Cursor::new(&v1)).unwrap();
    assert_eq!(back, header());
}

#[test]
fn version_2_damage_and_impossible_settings_are_refused() {
    let v2 = header_v2().to_bytes().unwrap();
    for len in 0..v2.len() {
        assert!(Header::read_from(&mut Cursor::new(&v2[..len])).is_err(), "cut at {len}");
    }
    for bit in 0..v2.len() * 8 {
        let mut damaged = v2.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(Header::read_from(&mut Cursor::new(&damaged)).is_err(), "flipping bit {bit} went unnoticed");
    }
    let bad = [
        Header { slide: 2048, ..header_v2() },
        Header { slide: 10, overlap: 5, ..header_v2() },
        Header { sink: 2, ..header_v2() },
        Header { slide: 0, sink: 1, ..header_v2() },
        Header { mixer: vec![0; 33], ..header_v2() },
    ];
    for h in bad {
        let err = h.to_bytes().expect_err("impossible settings must not be written");
        assert!(!err.to_string().contains('\n'));
    }
    // A version-2 header that version 1 could express is not one llmzip writes: one header, one encoding.
    let mut fake = header().to_bytes().unwrap();
    fake[8] = 2;
    let body = fake.len() - 4;
    fake.truncate(body);
    fake.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let crc = crc32(&fake);
    fake.extend_from_slice(&crc.to_le_bytes());
    let err = Header::read_from(&mut Cursor::new(&fake)).unwrap_err();
    assert!(err.to_string().contains("without slide or mixer"), "{err}");
}

/// CRC-32 (ISO-HDLC), bitwise, as FORMAT.md defines it: the test does not borrow the crate's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Regression: `llmzip l` of a version-2 archive said "no valid header ends where its chunks begin":
/// the tail reader looked for the header only at version-1 lengths. (The lister now walks from the
/// front; the headers of every mixer length must still list.)
#[test]
fn the_lister_finds_headers_of_every_mixer_length() {
    for (mixer_len, v3) in [0usize, 1, 8, 32].into_iter().flat_map(|m| [(m, false), (m, true)]) {
        let h = Header { mixer: vec![5; mixer_len], ..header_v2() };
        let h = if v3 {
            Header { framing: Framing::Compact, tokenizer_fingerprint: vec![0xcd; 8], ..h }
        } else {
            h
        };
        for chunks in [0, 2] {
            let mut w = ArchiveWriter::new(Vec::new(), &h).unwrap();
            for _ in 0..chunks {
                w.write_chunk(ChunkKind::Stored, b"hello", 0, b"hello").unwrap();
            }
            let bytes = w.finish().unwrap();
            let info = read_tail(&mut Cursor::new(&bytes)).unwrap_or_else(|e| panic!("{mixer_len}: {e}"));
            assert_eq!(info.header, h);
            assert_eq!(info.archive_bytes, bytes.len() as u64);
        }
    }
}
