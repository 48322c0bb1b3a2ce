//! Any bytes must survive tokenization: `decode(encode(bytes)) == bytes`, every id inside the vocabulary,
//! at most three tokens per byte (the format's limit), with a full byte-level vocabulary and with one
//! that lacks SmolLM2's 21 missing bytes (so every one of those is written as an escape).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llmzip::tokenizer::{Tokenizer, byte_to_char};

/// Byte tokens (without `missing`), a few merges, digits split as SmolLM2 does, and the start token.
fn tokenizer(missing: &[u8]) -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
    tokens.extend((0..=255u8).filter(|b| !missing.contains(b)).map(|b| byte_to_char(b).to_string()));
    let merges: Vec<String> = ["t h", "th e", "Ġ t", "Ġt h", "i n", "a n", "e r", "o n", "Ġ a", "r e"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    for m in &merges {
        tokens.push(m.replace(' ', ""));
    }
    Tokenizer::new("gpt2", Some("smollm"), tokens, &merges, Some(0)).expect("valid tokenizer")
}

fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let missing: Vec<u8> = [0xC0u8, 0xC1].into_iter().chain(0xF5..=0xFF).collect();
        [tokenizer(&[]), tokenizer(&missing)]
    })
}

fuzz_target!(|data: &[u8]| {
    for t in tokenizers() {
        let ids = t.encode(data).expect("any bytes encode");
        assert!(ids.len() <= 3 * data.len(), "{} tokens for {} bytes", ids.len(), data.len());
        assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        let mut back = Vec::new();
        t.decode_into(&ids, &mut back);
        assert_eq!(back, data, "round trip");
    }
});
