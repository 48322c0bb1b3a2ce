//! The tokenizer of the real default model: lossless on every corpus file and on arbitrary bytes.

use std::sync::OnceLock;

use llmzip::model::GgufFile;
use llmzip::tokenizer::Tokenizer;

use crate::common;

fn smollm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let gguf = GgufFile::open(&common::default_model()).expect("default model opens");
        Tokenizer::from_gguf(gguf.content()).expect("tokenizer builds")
    })
}

fn assert_round_trip(t: &Tokenizer, data: &[u8], what: &str) -> Vec<u32> {
    let ids = t.encode(data).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut back = Vec::with_capacity(data.len());
    t.decode_into(&ids, &mut back);
    assert!(back == data, "{what}: decode(encode(x)) != x");
    ids
}

#[test]
fn every_corpus_file_round_trips() {
    let t = smollm();
    let mut files: Vec<String> = Vec::new();
    for dir in ["canterbury", "calgary", "canterbury-large", "silesia", "enwik8"] {
        let mut names: Vec<String> = std::fs::read_dir(common::data_dir().join(dir))
            .unwrap_or_else(|e| panic!("../shared/data/{dir}: {e}"))
            .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        names.sort();
        files.extend(names);
    }
    assert!(files.len() >= 40, "expected the whole corpus, found {} files", files.len());
    for name in &files {
        let data = common::read_data(name);
        // Silesia and the large Canterbury files are many megabytes; their first 2 MB cover their kind.
        let data = &data[..data.len().min(2 << 20)];
        assert_round_trip(t, data, name);
    }
}

#[test]
fn random_byte_strings_round_trip() {
    let t = smollm();
    let pieces: [&[u8]; 8] =
        [b"the ", b"\xff", "é".as_bytes(), b"\xe2\x82", b"12345", b"\n\n", "日本".as_bytes(), b"\x00\x01"];
    for case in 0..300u64 {
        let noise = common::random_bytes(5000, case);
        let len = (noise[0] as usize * 19 + noise[1] as usize) % 5000;
        // Alternate pure noise with mixtures of ASCII words, UTF-8, invalid and truncated sequences.
        let input: Vec<u8> = if case % 2 == 0 {
            noise[..len].to_vec()
        } else {
            noise[..len / 4].iter().flat_map(|&b| pieces[b as usize % pieces.len()].iter().copied()).collect()
        };
        assert_round_trip(t, &input, &format!("random case {case}"));
    }
}

#[test]
fn digits_split_words_merge_and_specials_stay_text() {
    let t = smollm();
    assert_eq!(t.encode(b"12345").unwrap().len(), 5, "every digit is its own token");
    assert_eq!(t.encode(b" the").unwrap().len(), 1, "' the' is one token");
    assert_eq!(t.encode(b"Hello world").unwrap().len(), 2);
    let special = "<|im_start|>user<|endoftext|>";
    let ids = assert_round_trip(t, special.as_bytes(), "special spellings");
    assert!(ids.len() > 3, "special tokens are never produced from text: {ids:?}");
    assert_eq!(t.token_bytes(t.start_token()), b"<|endoftext|>");
    assert_eq!(t.vocab_size(), 49152);
}

#[test]
fn invalid_utf8_round_trips() {
    let t = smollm();
    for input in [&b"\xff"[..], b"abc\xc3", b"\xe2\x82 euro", b"\xf0\x9f\x98 x", b"\xc0\xaf", b"\xed\xa0\x80"]
    {
        assert_round_trip(t, input, "invalid utf-8");
    }
    // SmolLM2 has no token for byte 0x04: it is escaped as marker + two hex digits.
    let ids = assert_round_trip(t, b"\x04", "escaped byte");
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], t.start_token());
}

#[test]
fn fingerprint_is_stable_and_depends_on_the_vocabulary() {
    let t = smollm();
    let gguf = GgufFile::open(&common::default_model()).unwrap();
    assert_eq!(Tokenizer::from_gguf(gguf.content()).unwrap().fingerprint(), t.fingerprint());
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into()];
    tokens.extend((0..=255u8).map(|b| llmzip::tokenizer::byte_to_char(b).to_string()));
    let tiny = Tokenizer::new("gpt2", Some("smollm"), tokens, &[], None).unwrap();
    assert_ne!(tiny.fingerprint(), t.fingerprint());
}
