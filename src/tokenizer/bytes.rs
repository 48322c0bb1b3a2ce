//! GPT-2's byte-level alphabet: every byte value is spelled by one printable Unicode character, so BPE
//! vocabularies can be stored as strings. Bytes that are printable Latin-1 keep their own character; the
//! other 68 (controls, space, DEL, NBSP, soft hyphen...) are moved, in byte order, to U+0100 onwards.

use std::sync::OnceLock;

fn is_kept(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

struct Tables {
    to_char: [char; 256],
    /// Indexed by code point for the range the alphabet uses (below U+0144).
    to_byte: [Option<u8>; 0x144],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut to_byte = [None; 0x144];
        let mut moved = 0u32;
        for b in 0..=255u8 {
            let c = if is_kept(b) {
                b as u32
            } else {
                moved += 1;
                255 + moved
            };
            let ch = char::from_u32(c).expect("alphabet code points are valid");
            to_char[b as usize] = ch;
            to_byte[c as usize] = Some(b);
        }
        Tables { to_char, to_byte }
    })
}

/// The character that spells byte `b`.
pub fn byte_to_char(b: u8) -> char {
    tables().to_char[b as usize]
}

/// The byte a character spells, if it belongs to the byte-level alphabet.
pub fn char_to_byte(c: char) -> Option<u8> {
    tables().to_byte.get(c as usize).copied().flatten()
}

/// The bytes a vocabulary entry stands for. Entries made only of alphabet characters (every BPE token)
/// map byte by byte; others (special tokens written in plain text) stand for their UTF-8 spelling.
pub fn token_to_bytes(token: &str) -> Vec<u8> {
    let mapped: Option<Vec<u8>> = token.chars().map(char_to_byte).collect();
    mapped.unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection_with_the_known_landmarks() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(token_to_bytes("Ġthe"), b" the");
        assert_eq!(token_to_bytes("<|endoftext|>"), b"<|endoftext|>");
    }
}
