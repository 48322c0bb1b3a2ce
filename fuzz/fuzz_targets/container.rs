//! Arbitrary bytes as an archive: reading (sequentially and from the tail, one archive or several) must
//! return errors, never panic, hang or allocate what a corrupt length field claims. Each input is read
//! as it is and again with its checksums repaired, so the field checks behind the CRCs are reached too.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use llmzip::container::{ArchiveReader, read_archives, read_tail};

mod support;

fn read(data: &[u8]) {
    let mut rest = data;
    while let Ok(mut reader) = ArchiveReader::new(Cursor::new(rest)) {
        let mut index = 0u64;
        while let Ok(Some(chunk)) = reader.next_chunk() {
            let _ = chunk.verify_original(index, &chunk.payload);
            reader.note_original(&chunk.payload);
            index += 1;
        }
        match reader.finish() {
            Ok((len, _)) if len > 0 && (len as usize) < rest.len() => rest = &rest[len as usize..],
            _ => break,
        }
    }
    if let Ok(all) = read_archives(&mut Cursor::new(data)) {
        let total: u64 = all.iter().map(|a| a.archive_bytes).sum();
        assert_eq!(total, data.len() as u64, "listed archives must cover the file exactly");
        assert!(all.iter().all(|a| a.header.check_limits().is_ok()));
    }
    let _ = read_tail(&mut Cursor::new(data));
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut repaired = data.to_vec();
    support::repair_crcs(&mut repaired);
    if repaired != data {
        read(&repaired);
    }
});
