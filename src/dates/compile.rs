//! Turns a `SimpleDateFormat` pattern into tokens once, so formatting and parsing never look at
//! the pattern text again.

use super::PatternError;

/// Letters this engine implements; every other ASCII letter outside quotes is refused.
const SUPPORTED_LETTERS: &str = "yMdHhkKmsSaEuDzZX";

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Token {
    Literal(String),
    Field(Field),
}

/// A run of one pattern letter: `yyyy` is `{ letter: 'y', count: 4 }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Field {
    pub letter: char,
    pub count: usize,
}

impl Field {
    /// Numeric fields abut: a numeric field followed by another is read by its width.
    pub(crate) fn is_numeric(&self) -> bool {
        match self.letter {
            'M' => self.count <= 2,
            'y' | 'd' | 'H' | 'h' | 'k' | 'K' | 'm' | 's' | 'S' | 'D' | 'u' => true,
            _ => false,
        }
    }

    /// The pattern text of this field, for messages: `MM`, `yyyy`.
    pub(crate) fn text(&self) -> String {
        self.letter.to_string().repeat(self.count)
    }
}

pub(crate) fn tokenize(pattern: &str) -> Result<Vec<Token>, PatternError> {
    let error = |position: usize, message: String| PatternError {
        position,
        message,
        pattern: pattern.to_string(),
    };
    if pattern.is_empty() {
        return Err(error(1, "empty date pattern".to_string()));
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                literal.push('\'');
                i += 2;
                continue;
            }
            let opening = i;
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(error(opening + 1, "unterminated quote".to_string())),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        literal.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        literal.push(other);
                        i += 1;
                    }
                }
            }
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while chars.get(i) == Some(&c) {
                i += 1;
            }
            let field = Field {
                letter: c,
                count: i - start,
            };
            check_field(field).map_err(|message| error(start + 1, message))?;
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(Token::Field(field));
        } else {
            literal.push(c);
            i += 1;
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

fn check_field(field: Field) -> Result<(), String> {
    if !SUPPORTED_LETTERS.contains(field.letter) {
        return Err(format!("unsupported pattern letter '{}'", field.letter));
    }
    match field.letter {
        'X' if field.count > 3 => Err("too many X letters: use X, XX or XXX".to_string()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(letter: char, count: usize) -> Token {
        Token::Field(Field { letter, count })
    }

    fn literal(text: &str) -> Token {
        Token::Literal(text.to_string())
    }

    #[test]
    fn quotes_and_doubled_quotes_become_literals() {
        let tokens = tokenize("h 'o''clock' a''").unwrap();
        assert_eq!(
            tokens,
            vec![
                field('h', 1),
                literal(" o'clock "),
                field('a', 1),
                literal("'")
            ]
        );
    }

    #[test]
    fn letter_runs_become_fields_with_counts() {
        let tokens = tokenize("yyyy-MM-dd'T'HH").unwrap();
        assert_eq!(
            tokens,
            vec![
                field('y', 4),
                literal("-"),
                field('M', 2),
                literal("-"),
                field('d', 2),
                literal("T"),
                field('H', 2)
            ]
        );
    }

    #[test]
    fn errors_give_the_one_based_position() {
        let error = tokenize("yyyy-QQ").unwrap_err();
        assert_eq!(
            (error.position, error.message.as_str()),
            (6, "unsupported pattern letter 'Q'")
        );
        let error = tokenize("yyyy 'at").unwrap_err();
        assert_eq!(
            (error.position, error.message.as_str()),
            (6, "unterminated quote")
        );
        assert_eq!(tokenize("HHXXXX").unwrap_err().position, 3);
    }
}
