//! Full decompression of arbitrary archives (checksums repaired, so mutated fields reach the decoder)
//! with the synthetic model: every input must end in `Ok` with output that passed every checksum, or in
//! an error, never a panic, a hang or an allocation sized by a corrupt field.
#![no_main]

use std::io::Cursor;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use llmzip::io::NoProgress;
use llmzip::pipeline::{CodecOptions, Sessions, decompress_with};

mod support;

/// One model set-up for the whole campaign (its options never change between inputs).
static SESSIONS: Mutex<Option<Sessions>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut archive = data.to_vec();
    support::repair_crcs(&mut archive);
    let opts = CodecOptions {
        model: Some(support::synthetic_model().to_string_lossy().into_owned()),
        threads: 1,
        lanes: 4,
        ..CodecOptions::default()
    };
    let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    let sessions = sessions.get_or_insert_with(|| Sessions::quiet(&opts));
    let mut out = Vec::new();
    if let Ok(stats) = decompress_with(sessions, &mut Cursor::new(&archive), &mut out, &opts, &NoProgress) {
        assert_eq!(stats.output_bytes, out.len() as u64);
    }
});
