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

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let gguf = GgufFile::open(&common::gemma_model()).expect("Gemma model opens");
        Tokenizer::from_gguf(gguf.content()).expect("Gemma tokenizer builds")
    })
}

/// Every file of ../shared/data, the multilingual man pages included, through Gemma's SentencePiece.
#[test]
fn gemma_every_data_file_round_trips() {
    let t = gemma();
    let files = common::data_files();
    assert!(files.iter().any(|f| f.starts_with("multilingual/")), "../shared/data/multilingual is missing");
    for name in &files {
        // Silesia and the large Canterbury files are many megabytes; their first 2 MB cover their kind.
        let data = common::read_data_prefix(name, 2 << 20);
        assert_round_trip(t, &data, name);
    }
}

#[test]
fn gemma_random_byte_strings_round_trip() {
    let t = gemma();
    let pieces: [&[u8]; 12] = [
        b"the ",
        b"\xff",
        "\u{2581}".as_bytes(),
        b"\xe2\x96",
        "é".as_bytes(),
        b"\n\n\n",
        b"    ",
        "日本語".as_bytes(),
        b"<start_of_turn>",
        b"<0x41>",
        b"\r\n",
        b"\x00\x01",
    ];
    for case in 0..300u64 {
        let noise = common::random_bytes(5000, case);
        let len = (noise[0] as usize * 19 + noise[1] as usize) % 5000;
        let input: Vec<u8> = if case % 2 == 0 {
            noise[..len].to_vec()
        } else {
            noise[..len / 4].iter().flat_map(|&b| pieces[b as usize % pieces.len()].iter().copied()).collect()
        };
        assert_round_trip(t, &input, &format!("random case {case}"));
    }
}

#[test]
fn gemma_is_a_real_multilingual_tokenizer() {
    let t = gemma();
    assert_eq!(t.vocab_size(), 262_144);
    assert_eq!(t.start_token(), 2, "Gemma's BOS");
    assert_eq!(t.token_bytes(2), b"", "control tokens stand for no bytes");
    assert_eq!(t.token_bytes(238 + 0x41), b"A", "byte tokens <0x00>.. start at id 238");
    let hello = assert_round_trip(t, b"Hello world", "hello");
    assert!(hello.len() <= 3, "'Hello world' is a few tokens, not {hello:?}");
    // Specials spelled in text stay text: no control token (types 3) such as <bos> or <start_of_turn>.
    for text in ["<bos>", "<start_of_turn>user\n", "<eos><pad><unk><mask>", "<0x41>"] {
        let ids = assert_round_trip(t, text.as_bytes(), text);
        assert!(
            ids.iter().all(|&i| !t.token_bytes(i).is_empty()),
            "{text}: a control token was produced: {ids:?}"
        );
        assert!(ids.len() > 1, "{text} is ordinary text, not one token: {ids:?}");
    }
    // A literal U+2581 is its three byte tokens; a space before a word is part of the word's piece.
    let ids = assert_round_trip(t, "\u{2581}".as_bytes(), "literal mark");
    assert_eq!(ids, vec![238 + 0xe2, 238 + 0x96, 238 + 0x81]);
    assert_eq!(assert_round_trip(t, b" the", "space the").len(), 1);

    let smol = smollm();
    // Measured: tokens per byte 0.249 0.286 0.258 0.365 0.341; Gemma/SmolLM2 tokens 0.43 0.53 0.60 0.78 0.83.
    for (file, max_per_byte, max_vs_smollm) in [
        ("ja_grep.1", 0.35, 0.6),
        ("zh_ssh.1", 0.35, 0.65),
        ("ru_signal.7", 0.35, 0.7),
        ("de_tar.1", 0.45, 0.9),
        ("fr_signal.7", 0.45, 0.95),
    ] {
        let data = common::read_data(&format!("multilingual/{file}"));
        let g = assert_round_trip(t, &data, file).len();
        let s = assert_round_trip(smol, &data, file).len();
        let per_byte = g as f64 / data.len() as f64;
        assert!(per_byte < max_per_byte, "{file}: {g} Gemma tokens for {} bytes", data.len());
        assert!((g as f64) < max_vs_smollm * s as f64, "{file}: Gemma {g} tokens, SmolLM2 {s}");
    }
}

#[test]
fn gemma_fingerprint_is_stable_and_differs_from_smollm() {
    let gguf = GgufFile::open(&common::gemma_model()).unwrap();
    let again = Tokenizer::from_gguf(gguf.content()).unwrap();
    assert_eq!(again.fingerprint(), gemma().fingerprint());
    assert_ne!(gemma().fingerprint(), smollm().fingerprint());
}
