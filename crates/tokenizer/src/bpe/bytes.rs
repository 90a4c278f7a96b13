//! GPT-2's byte-to-unicode map: every byte as one printable `char`, so a byte string is a string.

/// The `char` GPT-2 (`bytes_to_unicode` in `encoder.py`) and HF's `ByteLevel` give byte `b`: the
/// printable Latin-1 bytes (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for themselves, and the other
/// 68 bytes take `U+0100`, `U+0101`, ... in byte order (space is `Ġ`, newline `Ċ`).
pub const fn byte_char(b: u8) -> char {
    let table = &BYTE_CHARS;
    table[b as usize]
}

/// The byte a byte-level `char` stands for, or `None` for a `char` outside the map.
pub fn char_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 0x100 {
        let b = code as u8;
        if is_printable(b) {
            return Some(b);
        }
        return None;
    }
    if code < 0x100 + 68 {
        return Some(NON_PRINTABLE[(code - 0x100) as usize]);
    }
    None
}

/// Bytes that map to themselves.
const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

/// The 68 bytes that are not printable, in order: the `n`-th maps to `U+0100 + n`.
const NON_PRINTABLE: [u8; 68] = {
    let mut out = [0u8; 68];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if !is_printable(b as u8) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// `byte_char` for every byte.
const BYTE_CHARS: [char; 256] = {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        out[b] = if is_printable(b as u8) {
            b as u8 as char
        } else {
            let c = match char::from_u32(0x100 + n) {
                Some(c) => c,
                None => '\0',
            };
            n += 1;
            c
        };
        b += 1;
    }
    out
};

/// The bytes a byte-level string stands for, or `None` if one of its `char`s is outside the map
/// (a special token such as `[CLS]`... is ASCII and maps; `▁` does not).
pub fn byte_level_to_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gpt2_bytes_to_unicode() {
        // encoder.py: bs = printable ranges; the rest get 256 + n in byte order.
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'\t'), 'ĉ');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(0x7f), '\u{121}');
        assert_eq!(byte_char(0xad), '\u{143}');
        assert_eq!(byte_char(0xff), 'ÿ');
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            assert!(seen.insert(byte_char(b)), "{b} maps to a taken char");
            assert_eq!(char_byte(byte_char(b)), Some(b));
        }
        assert_eq!(char_byte('▁'), None);
        assert_eq!(char_byte('\u{144}'), None);
        assert_eq!(char_byte(' '), None);
    }
}
