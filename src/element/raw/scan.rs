//! A reader for JSON text that a validating parse has already accepted (the page split): it only
//! finds where values start and end, so it can skip a record's members with a plain byte loop
//! instead of serde_json's full tokenizer (which re-checks every escape and number).
//!
//! Text that is not valid JSON reads as "not found", never as a panic or an endless loop: every
//! step either moves forward or stops.

/// Finds the members named `names` of the object `text` (the last one when a key repeats), or
/// the elements at those positions (names like `"2"`) of the array `text`.
pub(super) fn children<'a>(text: &'a str, names: &[&str], found: &mut [Option<&'a str>]) {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    match reader.peek() {
        Some(b'{') => {
            let _ = reader.members(names, found);
        }
        Some(b'[') => {
            let positions: Vec<Option<usize>> = names.iter().map(|n| n.parse().ok()).collect();
            let _ = reader.elements(&positions, found);
        }
        _ => {}
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// At an opening quote: moves past the closing one. True when the string has escapes.
    fn skip_string(&mut self) -> Option<bool> {
        let (end, escaped) = string_end(self.bytes, self.at + 1)?;
        self.at = end;
        Some(escaped)
    }

    /// At a value's first byte: moves past it and returns its text.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.at;
        let bytes = self.bytes;
        self.at = match *bytes.get(start)? {
            b'"' => string_end(bytes, start + 1)?.0,
            b'{' | b'[' => container_end(bytes, start)?,
            // A number or a literal ends where the next delimiter starts.
            _ => bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .map_or(bytes.len(), |n| start + n),
        };
        self.text.get(start..self.at)
    }

    fn members(&mut self, names: &[&str], found: &mut [Option<&'a str>]) -> Option<()> {
        self.at += 1; // '{'
        loop {
            self.skip_whitespace();
            match self.peek()? {
                b'}' => return Some(()),
                b'"' => {}
                _ => return None,
            }
            let key_start = self.at;
            let escaped = self.skip_string()?;
            let key = self.text.get(key_start..self.at)?;
            self.skip_whitespace();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.skip_whitespace();
            let value = self.value()?;
            if let Some(slot) = key_position(names, key, escaped) {
                found[slot] = Some(value);
            }
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn elements(
        &mut self,
        positions: &[Option<usize>],
        found: &mut [Option<&'a str>],
    ) -> Option<()> {
        self.at += 1; // '['
        self.skip_whitespace();
        if self.peek()? == b']' {
            return Some(());
        }
        let mut index = 0usize;
        loop {
            self.skip_whitespace();
            let value = self.value()?;
            for (slot, position) in positions.iter().enumerate() {
                if *position == Some(index) {
                    found[slot] = Some(value);
                }
            }
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => return Some(()),
                _ => return None,
            }
            index += 1;
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks the bytes of `chunk` equal to `byte` (the lowest mark is exact, which is all that is read).
fn bytes_equal(chunk: u64, byte: u8) -> u64 {
    let x = chunk ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// From just inside a string: the position after its closing quote, and whether it has escapes.
/// Strings are most of a record's bytes, so they are searched eight bytes at a time.
fn string_end(bytes: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        while let Some(chunk) = bytes.get(at..at + 8) {
            let chunk = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let marks = bytes_equal(chunk, b'"') | bytes_equal(chunk, b'\\');
            if marks != 0 {
                at += (marks.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        match *bytes.get(at)? {
            b'"' => return Some((at + 1, escaped)),
            b'\\' => {
                escaped = true;
                at += 2;
            }
            _ => at += 1,
        }
    }
}

/// From an opening bracket: the position after the bracket that closes it.
fn container_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *bytes.get(at)? {
            b'"' => {
                at = string_end(bytes, at + 1)?.0;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
}

/// Which of `names` the quoted `key` is; a key with escapes is decoded first (`"\u0069d"` is `id`).
fn key_position(names: &[&str], key: &str, escaped: bool) -> Option<usize> {
    if escaped {
        let decoded: String = serde_json::from_str(key).ok()?;
        names.iter().position(|n| *n == decoded)
    } else {
        let bare = key.get(1..key.len() - 1)?;
        names.iter().position(|n| *n == bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings with a quote or backslash at every offset around the eight-byte steps end where
    /// serde_json says they end.
    #[test]
    fn strings_end_at_their_closing_quote_whatever_the_offset() {
        for before in 0..20 {
            for escape in ["\\\"", "\\\\", "\\n", "\\u00e9", ""] {
                for after in [0, 1, 7, 8, 9, 17] {
                    let text = format!(
                        "\"{}{escape}{}\" , 1",
                        "a".repeat(before),
                        "é".repeat(after)
                    );
                    let mut de = serde_json::Deserializer::from_str(&text);
                    let raw: &serde_json::value::RawValue =
                        serde::Deserialize::deserialize(&mut de).unwrap();
                    let end = string_end(text.as_bytes(), 1);
                    assert_eq!(end, Some((raw.get().len(), !escape.is_empty())), "{text}");
                }
            }
        }
        assert_eq!(string_end(b"\"abc\\", 1), None);
        assert_eq!(string_end(b"\"abcdefghijklmnop", 1), None);
    }
}
