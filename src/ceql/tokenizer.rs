//! The CEQL tokenizer: identifiers (dotted paths), numbers, quoted strings, operators,
//! keywords, parentheses and commas, each with its byte offset.

use super::CeqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    Like,
    In,
    Contains,
    Is,
    Null,
    True,
    False,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        const KEYWORDS: [(&str, Keyword); 10] = [
            ("and", Keyword::And),
            ("or", Keyword::Or),
            ("not", Keyword::Not),
            ("like", Keyword::Like),
            ("in", Keyword::In),
            ("contains", Keyword::Contains),
            ("is", Keyword::Is),
            ("null", Keyword::Null),
            ("true", Keyword::True),
            ("false", Keyword::False),
        ];
        KEYWORDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|(_, keyword)| *keyword)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A field name or dotted path, as written.
    Identifier(String),
    Number(String),
    /// A quoted string, with its escapes already resolved.
    Text(String),
    Compare(CompareOp),
    Keyword(Keyword),
    OpenParen,
    CloseParen,
    Comma,
}

impl TokenKind {
    pub(super) fn describe(&self) -> String {
        match self {
            TokenKind::Identifier(name) => format!("field '{name}'"),
            TokenKind::Number(number) => format!("number {number}"),
            TokenKind::Text(_) => "string literal".to_string(),
            TokenKind::Compare(op) => format!("operator '{}'", op.symbol()),
            TokenKind::Keyword(keyword) => {
                format!("keyword '{}'", format!("{keyword:?}").to_lowercase())
            }
            TokenKind::OpenParen => "'('".to_string(),
            TokenKind::CloseParen => "')'".to_string(),
            TokenKind::Comma => "','".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    pub offset: usize,
}

fn is_identifier_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '@'
}

fn is_identifier_part(c: char) -> bool {
    // `.` joins path segments; `/` lets an already-native path (`company/name`) through.
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '@' | '.' | '/')
}

/// Long on purpose: one scan with one `match` per character class, each arm a token; the
/// arms share the cursor, and the fuzz target holds every error offset inside the input.
#[allow(clippy::too_many_lines)]
pub(super) fn tokenize(input: &str) -> Result<Vec<Token>, CeqlError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let c = input[i..].chars().next().expect("i is on a char boundary");
        let start = i;
        let kind = match c {
            c if c.is_whitespace() => {
                i += c.len_utf8();
                continue;
            }
            '(' => {
                i += 1;
                TokenKind::OpenParen
            }
            ')' => {
                i += 1;
                TokenKind::CloseParen
            }
            ',' => {
                i += 1;
                TokenKind::Comma
            }
            '=' => {
                // `==` is accepted as a common slip for `=`.
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                TokenKind::Compare(CompareOp::Eq)
            }
            '!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                TokenKind::Compare(CompareOp::Ne)
            }
            '<' => match bytes.get(i + 1) {
                Some(b'=') => {
                    i += 2;
                    TokenKind::Compare(CompareOp::Le)
                }
                Some(b'>') => {
                    i += 2;
                    TokenKind::Compare(CompareOp::Ne)
                }
                _ => {
                    i += 1;
                    TokenKind::Compare(CompareOp::Lt)
                }
            },
            '>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    TokenKind::Compare(CompareOp::Ge)
                } else {
                    i += 1;
                    TokenKind::Compare(CompareOp::Gt)
                }
            }
            '\'' | '"' => {
                let (text, next) = read_quoted(input, i, c)?;
                i = next;
                TokenKind::Text(text)
            }
            c if c.is_ascii_digit()
                || (c == '-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                i = read_number(bytes, i);
                TokenKind::Number(input[start..i].to_string())
            }
            c if is_identifier_start(c) => {
                while let Some(next) = input[i..].chars().next() {
                    if !is_identifier_part(next) {
                        break;
                    }
                    i += next.len_utf8();
                }
                let word = &input[start..i];
                match Keyword::from_word(word) {
                    Some(keyword) => TokenKind::Keyword(keyword),
                    None => TokenKind::Identifier(word.to_string()),
                }
            }
            other => {
                return Err(CeqlError::new(
                    start,
                    format!("unexpected character '{other}'"),
                ));
            }
        };
        tokens.push(Token {
            kind,
            offset: start,
        });
    }
    Ok(tokens)
}

/// Reads a string opened by `quote` at `start`; a doubled quote stands for one quote.
/// Returns the text and the offset just after the closing quote.
fn read_quoted(input: &str, start: usize, quote: char) -> Result<(String, usize), CeqlError> {
    let mut text = String::new();
    let mut chars = input[start + 1..].char_indices().peekable();
    while let Some((relative, c)) = chars.next() {
        if c == quote {
            if chars.peek().map(|(_, next)| *next) == Some(quote) {
                chars.next();
                text.push(quote);
                continue;
            }
            return Ok((text, start + 1 + relative + 1));
        }
        text.push(c);
    }
    Err(CeqlError::new(
        start,
        format!("unterminated string: no closing {quote}"),
    ))
}

/// Reads `-?digits(.digits)?` from `start`; returns the offset after it.
fn read_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes[i] == b'-' {
        i += 1;
    }
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    i
}

/// Reports unbalanced parentheses before parsing, so the message names the real culprit.
pub(super) fn check_parentheses(tokens: &[Token]) -> Result<(), CeqlError> {
    let mut open = Vec::new();
    for token in tokens {
        match token.kind {
            TokenKind::OpenParen => open.push(token.offset),
            TokenKind::CloseParen => {
                open.pop().ok_or_else(|| {
                    CeqlError::new(
                        token.offset,
                        "unbalanced parentheses: ')' without a matching '('",
                    )
                })?;
            }
            _ => {}
        }
    }
    match open.pop() {
        Some(offset) => Err(CeqlError::new(
            offset,
            "unbalanced parentheses: '(' is never closed",
        )),
        None => Ok(()),
    }
}
