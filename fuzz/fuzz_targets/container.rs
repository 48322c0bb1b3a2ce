//! Arbitrary bytes as an archive: reading (sequentially and from the tail) must return errors, never
//! panic, hang or allocate what a corrupt length field claims.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use llmzip::container::{ArchiveReader, read_tail};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = ArchiveReader::new(Cursor::new(data)) {
        let mut index = 0u64;
        while let Ok(Some(chunk)) = reader.next_chunk() {
            let _ = chunk.verify_original(index, &chunk.payload);
            reader.note_original(&chunk.payload);
            index += 1;
        }
        let _ = reader.finish();
    }
    let _ = read_tail(&mut Cursor::new(data));
});
