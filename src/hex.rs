//! Lowercase hexadecimal text of bytes: how hashes, fingerprints and canaries appear in messages, in
//! the registry and in `sha256sum`'s output. One spelling, written once.

/// `bytes` as lowercase hex, two digits per byte, no separators.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Parses exactly `2 * N` lowercase hex digits (uppercase is refused so stored hashes have one spelling).
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_byte_value_as_format_does() {
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(encode(&all), expected);
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn decodes_what_it_encodes_and_nothing_else() {
        let d: [u8; 4] = [0x00, 0x9f, 0xa0, 0xff];
        assert_eq!(decode::<4>(&encode(&d)), Some(d));
        assert_eq!(decode::<4>("009fa0f"), None);
        assert_eq!(decode::<4>("009FA0FF"), None);
        assert_eq!(decode::<4>("009fa0fg"), None);
    }
}
