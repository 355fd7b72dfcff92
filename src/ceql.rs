//! CEQL `where` → ConnectWise `conditions`.
//!
//! Cloud Elements let a resource URL filter with CEQL, a small SQL-like `where` language
//! (`lastUpdated>'2024-01-01T00:00:00Z' and name like 'Ac%'`). ConnectWise Manage takes a
//! `conditions` parameter with a similar grammar but other literal forms: dates in brackets
//! (`[2024-01-01T00:00:00Z]`), strings in double quotes, and `/` between the parts of a field
//! path. [`where_to_conditions`] tokenizes and parses the CEQL text, then renders the tree in
//! ConnectWise's syntax:
//!
//! | CEQL | ConnectWise |
//! |---|---|
//! | `'2024-01-01T00:00:00Z'` compared with a field | `[2024-01-01T00:00:00Z]` (UTC; a date alone means midnight UTC) |
//! | other `'text'` or `"text"` | `"text"` (`"` and `\` escaped with `\`) |
//! | `_info.lastUpdated` | `_info/lastUpdated` |
//! | `<>` | `!=` |
//! | `x is null` / `x is not null` | `x=null` / `x!=null` |
//! | `and`, `or`, `not`, `( )`, `in (…)`, `like`, `contains`, numbers, `true`/`false`/`null` | kept |
//!
//! The output is normalised: symbol operators without spaces (`a>1`), keywords between single
//! spaces, in-lists as `(1,2,3)`.

mod tokenizer;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use tokenizer::{CompareOp, Keyword, Token, TokenKind, check_parentheses, tokenize};

/// Why a `where` clause could not be translated; `offset` is the 0-based byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid where clause at byte {offset}: {message}")]
pub struct CeqlError {
    pub offset: usize,
    pub message: String,
}

impl CeqlError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        CeqlError {
            offset,
            message: message.into(),
        }
    }
}

/// Translates a CEQL `where` clause into a ConnectWise `conditions` value.
pub fn where_to_conditions(ceql: &str) -> Result<String, CeqlError> {
    let tokens = tokenize(ceql)?;
    check_parentheses(&tokens)?;
    let mut parser = Parser {
        tokens: &tokens,
        position: 0,
        end: ceql.len(),
    };
    let condition = parser.parse_or()?;
    if let Some(extra) = parser.peek() {
        return Err(CeqlError::new(
            extra.offset,
            format!(
                "unexpected {} after a complete condition",
                extra.kind.describe()
            ),
        ));
    }
    let mut out = String::with_capacity(ceql.len() + 8);
    render_condition(&condition, &mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Field(String),
    Number(String),
    Text(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    /// Parentheses as written, kept so the output groups exactly like the input.
    Group(Box<Condition>),
    Compare {
        left: Operand,
        op: CompareOp,
        right: Operand,
    },
    Like {
        left: Operand,
        negated: bool,
        pattern: Operand,
    },
    Contains {
        left: Operand,
        negated: bool,
        value: Operand,
    },
    In {
        left: Operand,
        negated: bool,
        items: Vec<Operand>,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
}

struct Parser<'t> {
    tokens: &'t [Token],
    position: usize,
    /// Length of the input, the offset reported when it ends too early.
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn peek_kind(&self) -> Option<&TokenKind> {
        self.peek().map(|token| &token.kind)
    }

    fn advance(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.position);
        self.position += 1;
        token
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        if self.peek_kind() == Some(&TokenKind::Keyword(keyword)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// An error at the current token (or at the end of input), saying what was expected.
    fn expected(&self, what: &str) -> CeqlError {
        match self.peek() {
            Some(token) => CeqlError::new(
                token.offset,
                format!("expected {what}, found {}", token.kind.describe()),
            ),
            None => CeqlError::new(
                self.end,
                format!("expected {what}, found the end of the clause"),
            ),
        }
    }

    fn parse_or(&mut self) -> Result<Condition, CeqlError> {
        let mut left = self.parse_and()?;
        while self.eat_keyword(Keyword::Or) {
            let right = self.parse_and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Condition, CeqlError> {
        let mut left = self.parse_not()?;
        while self.eat_keyword(Keyword::And) {
            let right = self.parse_not()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> Result<Condition, CeqlError> {
        if self.eat_keyword(Keyword::Not) {
            return Ok(Condition::Not(Box::new(self.parse_not()?)));
        }
        if self.peek_kind() == Some(&TokenKind::OpenParen) {
            self.position += 1;
            let inner = self.parse_or()?;
            if self.peek_kind() != Some(&TokenKind::CloseParen) {
                return Err(self.expected("')' or 'and'/'or'"));
            }
            self.position += 1;
            return Ok(Condition::Group(Box::new(inner)));
        }
        self.parse_comparison()
    }

    fn parse_operand(&mut self, what: &str) -> Result<Operand, CeqlError> {
        let operand = match self.peek_kind() {
            Some(TokenKind::Identifier(name)) => Operand::Field(name.clone()),
            Some(TokenKind::Number(number)) => Operand::Number(number.clone()),
            Some(TokenKind::Text(text)) => Operand::Text(text.clone()),
            Some(TokenKind::Keyword(Keyword::True)) => Operand::Bool(true),
            Some(TokenKind::Keyword(Keyword::False)) => Operand::Bool(false),
            Some(TokenKind::Keyword(Keyword::Null)) => Operand::Null,
            _ => return Err(self.expected(what)),
        };
        self.position += 1;
        Ok(operand)
    }

    fn parse_comparison(&mut self) -> Result<Condition, CeqlError> {
        let left = self.parse_operand("a field, a value or '('")?;
        let negated = self.eat_keyword(Keyword::Not);
        let operator = self.peek().cloned();
        let Some(operator) = operator else {
            return Err(self.expected("a comparison operator"));
        };
        match operator.kind {
            TokenKind::Compare(op) if !negated => {
                self.position += 1;
                let right = self.parse_operand(&format!("a value after '{}'", op.symbol()))?;
                Ok(Condition::Compare { left, op, right })
            }
            TokenKind::Keyword(Keyword::Like) => {
                self.position += 1;
                let pattern = self.parse_operand("a pattern after 'like'")?;
                Ok(Condition::Like {
                    left,
                    negated,
                    pattern,
                })
            }
            TokenKind::Keyword(Keyword::Contains) => {
                self.position += 1;
                let value = self.parse_operand("a value after 'contains'")?;
                Ok(Condition::Contains {
                    left,
                    negated,
                    value,
                })
            }
            TokenKind::Keyword(Keyword::In) => {
                self.position += 1;
                let items = self.parse_in_list()?;
                Ok(Condition::In {
                    left,
                    negated,
                    items,
                })
            }
            TokenKind::Keyword(Keyword::Is) if !negated => {
                self.position += 1;
                let negated = self.eat_keyword(Keyword::Not);
                if !self.eat_keyword(Keyword::Null) {
                    return Err(self.expected("'null' after 'is'"));
                }
                Ok(Condition::IsNull {
                    operand: left,
                    negated,
                })
            }
            _ if negated => Err(self.expected("'like', 'in' or 'contains' after 'not'")),
            _ => Err(self.expected("a comparison operator")),
        }
    }

    fn parse_in_list(&mut self) -> Result<Vec<Operand>, CeqlError> {
        if self.peek_kind() != Some(&TokenKind::OpenParen) {
            return Err(self.expected("'(' after 'in'"));
        }
        self.position += 1;
        let mut items = vec![self.parse_operand("a value in the 'in' list")?];
        loop {
            match self.advance().map(|token| &token.kind) {
                Some(TokenKind::Comma) => items.push(self.parse_operand("a value after ','")?),
                Some(TokenKind::CloseParen) => return Ok(items),
                _ => {
                    self.position -= 1;
                    return Err(self.expected("',' or ')' in the 'in' list"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering in ConnectWise syntax

fn render_condition(condition: &Condition, out: &mut String) {
    match condition {
        Condition::And(left, right) | Condition::Or(left, right) => {
            render_condition(left, out);
            out.push_str(if matches!(condition, Condition::And(..)) {
                " and "
            } else {
                " or "
            });
            render_condition(right, out);
        }
        Condition::Not(inner) => {
            out.push_str("not ");
            render_condition(inner, out);
        }
        Condition::Group(inner) => {
            out.push('(');
            render_condition(inner, out);
            out.push(')');
        }
        Condition::Compare { left, op, right } => {
            // A date literal is only a date when the other side is a field.
            render_operand(left, matches!(right, Operand::Field(_)), out);
            out.push_str(op.symbol());
            render_operand(right, matches!(left, Operand::Field(_)), out);
        }
        Condition::Like {
            left,
            negated,
            pattern,
        } => {
            render_operand(left, false, out);
            out.push_str(if *negated { " not like " } else { " like " });
            render_operand(pattern, false, out);
        }
        Condition::Contains {
            left,
            negated,
            value,
        } => {
            render_operand(left, false, out);
            out.push_str(if *negated {
                " not contains "
            } else {
                " contains "
            });
            render_operand(value, false, out);
        }
        Condition::In {
            left,
            negated,
            items,
        } => {
            render_operand(left, false, out);
            out.push_str(if *negated { " not in (" } else { " in (" });
            let dates_allowed = matches!(left, Operand::Field(_));
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                render_operand(item, dates_allowed, out);
            }
            out.push(')');
        }
        Condition::IsNull { operand, negated } => {
            render_operand(operand, false, out);
            out.push_str(if *negated { "!=null" } else { "=null" });
        }
    }
}

fn render_operand(operand: &Operand, dates_allowed: bool, out: &mut String) {
    match operand {
        Operand::Field(path) => out.push_str(&path.replace('.', "/")),
        Operand::Number(number) => out.push_str(number),
        Operand::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        Operand::Null => out.push_str("null"),
        Operand::Text(text) => match dates_allowed.then(|| parse_iso_date(text)).flatten() {
            Some(instant) => {
                out.push('[');
                out.push_str(&instant.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
                out.push(']');
            }
            None => {
                out.push('"');
                for c in text.chars() {
                    if matches!(c, '"' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        },
    }
}

/// Recognises ISO-8601 dates (`2024-01-01`) and date-times (`2024-01-01T00:00`,
/// `2024-01-01T00:00:00.5+02:00`, …). A date alone is midnight UTC, a date-time without an
/// offset is taken as UTC.
fn parse_iso_date(text: &str) -> Option<DateTime<Utc>> {
    if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    if text.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return Some(date.and_time(NaiveTime::MIN).and_utc());
    }
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Some(with_offset.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(with_offset) = DateTime::parse_from_str(text, pattern) {
            return Some(with_offset.with_timezone(&Utc));
        }
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(naive, pattern) {
            return Some(local.and_utc());
        }
    }
    None
}
