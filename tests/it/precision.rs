//! The tables' precision in the archive header (FORMAT.md, *Quantizer*): the decoder derives it from the
//! model's vocabulary by the precision rule and refuses a header that records another, with a one-line
//! typed error, before decoding anything.

use std::io::Cursor;

use llmzip::io::NoProgress;
use llmzip::pipeline::{CodecOptions, PipelineError, compress, decompress};
use llmzip::quant::{LARGE_PRECISION_BITS, PRECISION_BITS, precision_for};

use crate::common;

/// Version-1 archives (window schedule, no mixer), whose header ends at 102 + n with its CRC.
fn v1_opts() -> CodecOptions {
    CodecOptions {
        slide: Some(0),
        mix: llmzip::mix::MixConfig::OFF,
        framing: llmzip::container::Framing::Indexed,
        ..common::synthetic_opts()
    }
}

/// The archive with its header's precision byte (81 + n) set to `bits`, the header CRC recomputed.
fn with_precision(archive: &[u8], bits: u8) -> Vec<u8> {
    let mut bad = archive.to_vec();
    let n = bad[12] as usize;
    bad[81 + n] = bits;
    let end = 102 + n;
    let crc = crc32fast::hash(&bad[..end]).to_le_bytes();
    bad[end..end + 4].copy_from_slice(&crc);
    bad
}

fn decode(archive: &[u8]) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    decompress(&mut Cursor::new(archive), &mut out, &v1_opts(), &NoProgress).map(|_| out)
}

#[test]
fn a_header_whose_precision_disagrees_with_the_rule_is_refused() {
    let text = common::sample_text(2000);
    let mut archive = Vec::new();
    compress(&mut Cursor::new(&text), &mut archive, &v1_opts(), &NoProgress).unwrap();
    // The synthetic model's small vocabulary has 24-bit tables, as the header says.
    let n = archive[12] as usize;
    assert_eq!(u32::from(archive[81 + n]), PRECISION_BITS);
    assert_eq!(decode(&archive).unwrap(), text);
    assert_eq!(decode(&with_precision(&archive, PRECISION_BITS as u8)).unwrap(), text);

    // The large-vocabulary precision: a precision the rule gives, but not for this model.
    let err = decode(&with_precision(&archive, LARGE_PRECISION_BITS as u8)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PipelineError::Precision { archive: 28, ours: 24, .. }), "{msg}");
    assert!(msg.contains("28-bit") && msg.contains("24-bit") && !msg.contains('\n'), "{msg}");

    // Precisions the rule never gives are refused before the model is loaded.
    for bits in [0u8, 16, 23, 25, 27, 30, 32, 255] {
        let err = decode(&with_precision(&archive, bits)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, PipelineError::PrecisionUnknown { archive } if archive == bits),
            "{bits}: {msg}"
        );
        assert!(msg.contains(&format!("{bits}-bit")) && !msg.contains('\n'), "{msg}");
    }
}

#[test]
fn the_rule_keeps_every_existing_vocabulary_at_24_bits() {
    // SmolLM2 and the synthetic models: the golden archives record 24, and must keep decoding.
    assert_eq!(precision_for(49_152), 24);
    assert_eq!(precision_for(65_536), 24);
    assert_eq!(precision_for(65_537), 28);
    assert_eq!(precision_for(262_144), 28);
}
