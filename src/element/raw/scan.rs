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
        self.at += 1;
        let mut escaped = false;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.at += 2;
                }
                _ => self.at += 1,
            }
        }
    }

    /// At a value's first byte: moves past it and returns its text.
    fn value(&mut self) -> Option<&'a str> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.skip_string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                // A number or a literal ends where the next delimiter starts.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.at += 1;
                }
            }
        }
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
