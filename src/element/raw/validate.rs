//! One strict pass over a page body: checks that it is a JSON array exactly as serde_json would
//! (`serde_json::from_slice::<Vec<Box<RawValue>>>`) and finds where each element starts and ends.
//!
//! It accepts and refuses what serde_json does and reports the same error at the same line and
//! column, so a refused page is reported in serde_json's words (`validate/tests.rs` runs both
//! readers on the same inputs):
//! - RFC 8259 grammar: no trailing commas, no `NaN`, no leading zeros, no bare control
//!   characters (U+0000–U+001F) in strings, only the escapes `\" \\ \/ \b \f \n \r \t \uXXXX`;
//! - `\uXXXX` escapes are not paired up: serde_json keeps a raw value's text without decoding
//!   it, so a lone surrogate (`"\ud800"`) is accepted, as there;
//! - no nesting limit below the page array: serde_json skips a raw value with a heap stack, not
//!   recursion, so its 128-level limit never applies to a record;
//! - invalid UTF-8 is refused, reported (as there) once the element holding it has been read.
//!
//! Strings are most of a page's bytes, so they are searched sixteen bytes at a time (SSE2 on
//! x86_64, else eight with SWAR) for the next quote, backslash or control byte; numbers and
//! structure are read byte by byte.

use std::fmt;
use std::ops::Range;

/// Why a body is not a JSON array; displayed exactly as serde_json displays the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at line {line} column {column}")]
pub struct JsonError {
    pub kind: JsonErrorKind,
    /// 1-based line of the problem.
    pub line: usize,
    /// Byte column on that line, counted the way serde_json counts it (the byte that showed the
    /// problem, 1-based; the last byte when the text ended early).
    pub column: usize,
    /// Bytes read when the problem showed (serde_json's position).
    pub offset: usize,
}

/// What was wrong, worded as serde_json words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The body holds no array (only whitespace, or another kind of value).
    NotAnArray,
    EofWhileParsingList,
    EofWhileParsingObject,
    EofWhileParsingString,
    EofWhileParsingValue,
    ExpectedColon,
    ExpectedListCommaOrEnd,
    ExpectedObjectCommaOrEnd,
    ExpectedSomeIdent,
    ExpectedSomeValue,
    InvalidEscape,
    InvalidNumber,
    InvalidUnicodeCodePoint,
    ControlCharacterWhileParsingString,
    KeyMustBeAString,
    TrailingCharacters,
    TrailingComma,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JsonErrorKind::*;
        f.write_str(match self {
            NotAnArray => "expected an array",
            EofWhileParsingList => "EOF while parsing a list",
            EofWhileParsingObject => "EOF while parsing an object",
            EofWhileParsingString => "EOF while parsing a string",
            EofWhileParsingValue => "EOF while parsing a value",
            ExpectedColon => "expected `:`",
            ExpectedListCommaOrEnd => "expected `,` or `]`",
            ExpectedObjectCommaOrEnd => "expected `,` or `}`",
            ExpectedSomeIdent => "expected ident",
            ExpectedSomeValue => "expected value",
            InvalidEscape => "invalid escape",
            InvalidNumber => "invalid number",
            InvalidUnicodeCodePoint => "invalid unicode code point",
            ControlCharacterWhileParsingString => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            KeyMustBeAString => "key must be a string",
            TrailingCharacters => "trailing characters",
            TrailingComma => "trailing comma",
        })
    }
}

/// A body that is one JSON array, and the text of each of its elements.
#[derive(Debug)]
pub struct SplitArray<'a> {
    /// The whole body (valid UTF-8 and valid JSON).
    pub text: &'a str,
    /// Each element's bytes in `text`, whitespace around it left out.
    pub elements: Vec<Range<usize>>,
}

/// Validates `body` as one JSON array, as serde_json does, and returns where its elements are.
pub fn split_array(body: &[u8]) -> Result<SplitArray<'_>, JsonError> {
    let mut parser = Parser {
        bytes: body,
        at: 0,
        open: Vec::new(),
    };
    let mut elements = Vec::new();
    if let Err(error) = parser.array(&mut elements) {
        // serde_json checks each element's UTF-8 as soon as the element ends, so a bad byte in
        // an element read before the syntax error is what it reports.
        let read = elements.last().map_or(0, |e: &Range<usize>| e.end);
        return Err(match std::str::from_utf8(&body[..read]) {
            Ok(_) => error,
            Err(bad) => parser.error_at(
                JsonErrorKind::InvalidUnicodeCodePoint,
                bad.valid_up_to() + 1,
            ),
        });
    }
    // Between elements there are only ASCII whitespace and delimiters, so this checks exactly
    // the elements' bytes, and the first bad byte is in the first element holding one.
    match std::str::from_utf8(body) {
        Ok(text) => Ok(SplitArray { text, elements }),
        Err(bad) => Err(parser.error_at(
            JsonErrorKind::InvalidUnicodeCodePoint,
            bad.valid_up_to() + 1,
        )),
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The brackets of the containers open inside the current element (`[` or `{`).
    open: Vec<u8>,
}

type Step = Result<(), JsonError>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Skips JSON whitespace and returns the byte after it.
    #[inline(always)]
    fn skip_whitespace(&mut self) -> Option<u8> {
        // Most pages are compact: one comparison says there is no whitespace here.
        match self.peek() {
            Some(byte) if byte > b' ' => Some(byte),
            _ => self.skip_whitespace_run(),
        }
    }

    fn skip_whitespace_run(&mut self) -> Option<u8> {
        loop {
            match self.peek() {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.at += 1,
                other => return other,
            }
        }
    }

    /// An error at position `offset` (serde_json's index: bytes read).
    #[cold]
    fn error_at(&self, kind: JsonErrorKind, offset: usize) -> JsonError {
        let offset = offset.min(self.bytes.len());
        let before = &self.bytes[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        JsonError {
            kind,
            line: 1 + before[..line_start].iter().filter(|&&b| b == b'\n').count(),
            column: offset - line_start,
            offset,
        }
    }

    /// An error about the byte at the cursor (serde_json's "peek" position).
    #[cold]
    fn error_here(&self, kind: JsonErrorKind) -> JsonError {
        self.error_at(kind, self.at + 1)
    }

    /// An error once the cursor has moved past the byte that showed it.
    #[cold]
    fn error_after(&self, kind: JsonErrorKind) -> JsonError {
        self.error_at(kind, self.at)
    }

    /// The top-level array, in the order serde_json's sequence reader checks it.
    fn array(&mut self, elements: &mut Vec<Range<usize>>) -> Step {
        use JsonErrorKind::*;
        match self.skip_whitespace() {
            Some(b'[') => self.at += 1,
            _ => return Err(self.error_here(NotAnArray)),
        }
        let mut first = true;
        loop {
            match self.skip_whitespace() {
                None => return Err(self.error_here(EofWhileParsingList)),
                Some(b']') => break,
                Some(_) if first => first = false,
                Some(b',') => {
                    self.at += 1;
                    match self.skip_whitespace() {
                        Some(b']') => return Err(self.error_here(TrailingComma)),
                        Some(_) => {}
                        None => return Err(self.error_here(EofWhileParsingValue)),
                    }
                }
                Some(_) => return Err(self.error_here(ExpectedListCommaOrEnd)),
            }
            let start = self.at;
            self.value()?;
            elements.push(start..self.at);
        }
        self.at += 1; // ']'
        match self.skip_whitespace() {
            Some(_) => Err(self.error_here(TrailingCharacters)),
            None => Ok(()),
        }
    }

    /// One value with everything inside it (serde_json's `ignore_value`, with the same checks in
    /// the same order); the cursor is at its first byte.
    /// Long on purpose: one `match` over the first byte mirrors serde_json's own order of checks,
    /// which the fuzz target compares error for error; split, the order would be harder to see.
    #[allow(clippy::too_many_lines)]
    fn value(&mut self) -> Step {
        use JsonErrorKind::*;
        loop {
            let opened = match self.skip_whitespace() {
                None => return Err(self.error_here(EofWhileParsingValue)),
                Some(b'"') => {
                    self.at += 1;
                    self.string()?;
                    false
                }
                Some(b'-') => {
                    self.at += 1;
                    self.number()?;
                    false
                }
                Some(b'0'..=b'9') => {
                    self.number()?;
                    false
                }
                Some(b'n') => {
                    self.literal(b"null")?;
                    false
                }
                Some(b't') => {
                    self.literal(b"true")?;
                    false
                }
                Some(b'f') => {
                    self.literal(b"false")?;
                    false
                }
                Some(bracket @ (b'[' | b'{')) => {
                    self.open.push(bracket);
                    self.at += 1;
                    true
                }
                Some(_) => return Err(self.error_here(ExpectedSomeValue)),
            };
            // After a complete value a comma or a closing bracket may follow; right after an
            // opening bracket, its closing one or a first member.
            let mut after_value = !opened;
            let mut frame = match self.open.last() {
                Some(&bracket) => bracket,
                None => return Ok(()),
            };
            loop {
                match self.skip_whitespace() {
                    Some(b',') if after_value => {
                        self.at += 1;
                        break;
                    }
                    Some(b']') if frame == b'[' => {}
                    Some(b'}') if frame == b'{' => {}
                    Some(_) if after_value => {
                        return Err(self.error_here(if frame == b'[' {
                            ExpectedListCommaOrEnd
                        } else {
                            ExpectedObjectCommaOrEnd
                        }));
                    }
                    Some(_) => break,
                    None => {
                        return Err(self.error_here(if frame == b'[' {
                            EofWhileParsingList
                        } else {
                            EofWhileParsingObject
                        }));
                    }
                }
                // The closing bracket of `frame`.
                self.at += 1;
                self.open.pop();
                frame = match self.open.last() {
                    Some(&bracket) => bracket,
                    None => return Ok(()),
                };
                after_value = true;
            }
            if frame == b'{' {
                match self.skip_whitespace() {
                    Some(b'"') => self.at += 1,
                    Some(_) => return Err(self.error_here(KeyMustBeAString)),
                    None => return Err(self.error_here(EofWhileParsingObject)),
                }
                self.string()?;
                match self.skip_whitespace() {
                    Some(b':') => self.at += 1,
                    Some(_) => return Err(self.error_here(ExpectedColon)),
                    None => return Err(self.error_here(EofWhileParsingObject)),
                }
            }
        }
    }

    /// `null`, `true` or `false`, the cursor at its first byte.
    fn literal(&mut self, word: &[u8]) -> Step {
        self.at += 1;
        for &expected in &word[1..] {
            match self.peek() {
                None => return Err(self.error_after(JsonErrorKind::EofWhileParsingValue)),
                Some(byte) => {
                    self.at += 1;
                    if byte != expected {
                        return Err(self.error_after(JsonErrorKind::ExpectedSomeIdent));
                    }
                }
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    /// A number after its sign: `0` or a digit run without a leading zero, then an optional
    /// fraction and exponent, each with at least one digit.
    fn number(&mut self) -> Step {
        use JsonErrorKind::InvalidNumber;
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error_here(InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => {
                self.at += 1;
                self.digits();
            }
            Some(_) => {
                self.at += 1;
                return Err(self.error_after(InvalidNumber));
            }
            None => return Err(self.error_after(InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error_here(InvalidNumber));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                Some(_) => {
                    self.at += 1;
                    return Err(self.error_after(InvalidNumber));
                }
                None => return Err(self.error_after(InvalidNumber)),
            }
        }
        Ok(())
    }

    /// A string's contents and closing quote (the cursor just past the opening one).
    #[inline(always)]
    fn string(&mut self) -> Step {
        use JsonErrorKind::*;
        let bytes = self.bytes;
        loop {
            self.at = plain_run_end(bytes, self.at);
            let Some(&byte) = bytes.get(self.at) else {
                return Err(self.error_after(EofWhileParsingString));
            };
            match byte {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    self.escape()?;
                }
                // A control byte: serde_json reports it without moving past it.
                _ => return Err(self.error_after(ControlCharacterWhileParsingString)),
            }
        }
    }

    /// The rest of an escape, the cursor just past its backslash.
    fn escape(&mut self) -> Step {
        use JsonErrorKind::*;
        let Some(byte) = self.peek() else {
            return Err(self.error_after(EofWhileParsingString));
        };
        self.at += 1;
        match byte {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => match self.bytes.get(self.at..self.at + 4) {
                Some(hex) => {
                    self.at += 4;
                    if hex.iter().all(u8::is_ascii_hexdigit) {
                        Ok(())
                    } else {
                        Err(self.error_after(InvalidEscape))
                    }
                }
                None => {
                    self.at = self.bytes.len();
                    Err(self.error_after(EofWhileParsingString))
                }
            },
            _ => Err(self.error_after(InvalidEscape)),
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit) the bytes of `chunk` that end a plain run inside a string: `"`, `\` or a
/// control byte. Only the lowest mark is exact (a borrow can mark bytes above a real one), and
/// only the lowest is read.
fn string_stops(chunk: u64) -> u64 {
    let quote = chunk ^ (ONES * u64::from(b'"'));
    let backslash = chunk ^ (ONES * u64::from(b'\\'));
    let found_quote = quote.wrapping_sub(ONES) & !quote;
    let found_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let found_control = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    (found_quote | found_backslash | found_control) & HIGHS
}

/// From `at` inside a string: the position of the first `"`, `\` or control byte (or the end).
#[inline(always)]
pub(super) fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = bytes.get(at..at + 16) {
        let stops = sse2::string_stops(chunk.try_into().expect("sixteen bytes"));
        if stops != 0 {
            return at + stops.trailing_zeros() as usize;
        }
        at += 16;
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let stops = string_stops(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

/// Sixteen bytes at a time with SSE2, which every x86_64 processor has.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };

    /// One bit per byte of `chunk`, set for `"`, `\` and control bytes (all exact).
    #[inline(always)]
    pub(super) fn string_stops(chunk: &[u8; 16]) -> u32 {
        let (low, high) = chunk.split_at(8);
        let low = i64::from_le_bytes(low.try_into().expect("eight bytes"));
        let high = i64::from_le_bytes(high.try_into().expect("eight bytes"));
        // SAFETY: these intrinsics only need SSE2, which this module is compiled with (it is
        // part of the x86_64 baseline); none of them reads memory.
        unsafe {
            let bytes = _mm_set_epi64x(high, low);
            let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
            // A byte is below 0x20 exactly when max(byte, 0x1f) is 0x1f.
            let limit = _mm_set1_epi8(0x1f);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(bytes, limit), limit);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
        }
    }
}

#[cfg(test)]
mod tests;
