//! The simulator's own parser for ConnectWise `conditions`, independent of the CEQL translator
//! so that each checks the other.
//!
//! Supported: comparisons of `id` with integers and of `lastUpdated`, `_info/lastUpdated`,
//! `dateEntered`, `_info/dateEntered` with `[date]` literals (`[2024-01-01T00:00:00Z]`,
//! `[2024-01-01]`, fractions and offsets allowed); operators `= != < <= > >=`; `and`, `or` and
//! parentheses. Field names and keywords are case-insensitive, as ConnectWise's are. Anything else
//! is rejected with a message, which the server answers with 400.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use super::RecordKind;
use super::records::StoredRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    LastUpdated,
    DateEntered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Operator {
    fn holds<T: Ord>(self, left: T, right: T) -> bool {
        match self {
            Operator::Eq => left == right,
            Operator::Ne => left != right,
            Operator::Lt => left < right,
            Operator::Le => left <= right,
            Operator::Gt => left > right,
            Operator::Ge => left >= right,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Integer(u64),
    Date(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Compare {
        field: Field,
        operator: Operator,
        value: Value,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

/// A parsed `conditions` value, ready to test records with.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Conditions {
    root: Node,
}

impl Conditions {
    /// Parses `text` for records of `kind` (contacts have no `dateEntered`).
    pub fn parse(text: &str, kind: RecordKind) -> Result<Conditions, String> {
        let mut parser = Parser {
            text,
            position: 0,
            kind,
        };
        let root = parser.or()?;
        parser.skip_spaces();
        if parser.position < text.len() {
            return Err(format!(
                "unexpected text at position {}: '{}'",
                parser.position,
                parser.rest()
            ));
        }
        Ok(Conditions { root })
    }

    pub fn matches(&self, id: u64, record: &StoredRecord) -> bool {
        self.root.matches(id, record)
    }
}

impl Node {
    fn matches(&self, id: u64, record: &StoredRecord) -> bool {
        match self {
            Node::Compare {
                field,
                operator,
                value,
            } => match (field, value) {
                (Field::Id, Value::Integer(number)) => operator.holds(id, *number),
                (Field::LastUpdated, Value::Date(date)) => {
                    operator.holds(record.last_updated, *date)
                }
                (Field::DateEntered, Value::Date(date)) => {
                    operator.holds(record.date_entered, *date)
                }
                // The parser pairs fields with their value type.
                _ => false,
            },
            Node::And(left, right) => left.matches(id, record) && right.matches(id, record),
            Node::Or(left, right) => left.matches(id, record) || right.matches(id, record),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    position: usize,
    kind: RecordKind,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.position..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.text.len() - trimmed.len();
    }

    /// Consumes `word` (case-insensitive) when it stands alone at the current position.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_spaces();
        let rest = self.rest().as_bytes();
        let matches = rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && !rest
                .get(word.len())
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if matches {
            self.position += word.len();
        }
        matches
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.primary()?;
        while self.eat_word("and") {
            left = Node::And(Box::new(left), Box::new(self.primary()?));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Node, String> {
        self.skip_spaces();
        if self.rest().starts_with('(') {
            self.position += 1;
            let inner = self.or()?;
            self.skip_spaces();
            if !self.rest().starts_with(')') {
                return Err(format!("missing ')' at position {}", self.position));
            }
            self.position += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, String> {
        let start = self.position;
        let name_length = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/'))
            .unwrap_or(self.rest().len());
        let name = &self.text[start..start + name_length];
        let field = match name.to_ascii_lowercase().as_str() {
            "id" => Field::Id,
            "lastupdated" | "_info/lastupdated" => Field::LastUpdated,
            "dateentered" | "_info/dateentered" if self.kind != RecordKind::Contact => {
                Field::DateEntered
            }
            "" => return Err(format!("expected a field name at position {start}")),
            _ => {
                return Err(format!(
                    "unknown field '{name}' for {}; the simulator filters on id, lastUpdated, \
                     _info/lastUpdated{}",
                    self.kind.plural(),
                    if self.kind == RecordKind::Contact {
                        ""
                    } else {
                        ", dateEntered, _info/dateEntered"
                    }
                ));
            }
        };
        self.position += name_length;
        self.skip_spaces();
        let operator = self.operator()?;
        self.skip_spaces();
        let value = match field {
            Field::Id => Value::Integer(self.integer()?),
            Field::LastUpdated | Field::DateEntered => Value::Date(self.date()?),
        };
        Ok(Node::Compare {
            field,
            operator,
            value,
        })
    }

    fn operator(&mut self) -> Result<Operator, String> {
        const OPERATORS: [(&str, Operator); 6] = [
            ("!=", Operator::Ne),
            ("<=", Operator::Le),
            (">=", Operator::Ge),
            ("=", Operator::Eq),
            ("<", Operator::Lt),
            (">", Operator::Gt),
        ];
        for (symbol, operator) in OPERATORS {
            if self.rest().starts_with(symbol) {
                self.position += symbol.len();
                return Ok(operator);
            }
        }
        Err(format!(
            "expected an operator (= != < <= > >=) at position {}",
            self.position
        ))
    }

    fn integer(&mut self) -> Result<u64, String> {
        let digits = self
            .rest()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest().len());
        let number = self.rest()[..digits]
            .parse()
            .map_err(|_| format!("expected a whole number at position {}", self.position))?;
        self.position += digits;
        Ok(number)
    }

    fn date(&mut self) -> Result<DateTime<Utc>, String> {
        let start = self.position;
        let Some(inner) = self.rest().strip_prefix('[') else {
            return Err(format!(
                "expected a date in brackets like [2024-01-01T00:00:00Z] at position {start}"
            ));
        };
        let Some(end) = inner.find(']') else {
            return Err(format!("missing ']' after the date at position {start}"));
        };
        let literal = &inner[..end];
        let date = parse_date(literal)
            .ok_or_else(|| format!("'{literal}' at position {start} is not a date"))?;
        self.position += end + 2;
        Ok(date)
    }
}

fn parse_date(literal: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc3339(literal) {
        return Some(date.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(literal, "%Y-%m-%d").ok()?;
    Some(date.and_time(NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn record(entered_hour: u32, updated_hour: u32) -> StoredRecord {
        StoredRecord {
            revision: 0,
            date_entered: Utc
                .with_ymd_and_hms(2024, 1, 1, entered_hour, 0, 0)
                .unwrap(),
            last_updated: Utc
                .with_ymd_and_hms(2024, 1, 1, updated_hour, 0, 0)
                .unwrap(),
            json: Box::default(),
        }
    }

    /// Which of ids 1..=4 (entered at hour id, updated at hour id + 10) match `text`.
    fn matching(text: &str) -> Vec<u64> {
        let conditions = Conditions::parse(text, RecordKind::Ticket)
            .unwrap_or_else(|error| panic!("{text}: {error}"));
        (1..=4u64)
            .filter(|&id| conditions.matches(id, &record(id as u32, id as u32 + 10)))
            .collect()
    }

    #[test]
    fn operators_on_ids_and_dates() {
        let table: [(&str, &[u64]); 12] = [
            ("id=2", &[2]),
            ("id!=2", &[1, 3, 4]),
            ("id<2", &[1]),
            ("id<=2", &[1, 2]),
            ("id>2", &[3, 4]),
            ("id>=2", &[2, 3, 4]),
            ("lastUpdated>[2024-01-01T12:00:00Z]", &[3, 4]),
            ("_info/lastUpdated <= [2024-01-01T12:00:00Z]", &[1, 2]),
            ("dateEntered=[2024-01-01T03:00:00Z]", &[3]),
            ("_INFO/DATEENTERED > [2024-01-01T04:00:00+02:00]", &[3, 4]),
            ("lastUpdated>=[2024-01-01]", &[1, 2, 3, 4]),
            ("lastUpdated>[2024-01-01T12:59:59.5Z]", &[3, 4]),
        ];
        for (text, expected) in table {
            assert_eq!(matching(text), expected, "{text}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        assert_eq!(matching("id=1 or id=2 and id=3"), vec![1]);
        assert_eq!(matching("(id=1 or id=2) and id=2"), vec![2]);
        assert_eq!(
            matching("id>1 AND (dateEntered<[2024-01-01T03:00:00Z] OR id=4)"),
            vec![2, 4]
        );
    }

    #[test]
    fn contacts_have_no_date_entered_and_bad_text_is_rejected() {
        let error = Conditions::parse("dateEntered>[2024-01-01]", RecordKind::Contact).unwrap_err();
        assert!(
            error.contains("unknown field 'dateEntered' for contacts"),
            "{error}"
        );
        for bad in [
            "",
            "id",
            "id=",
            "id=x",
            "id~1",
            "lastUpdated>[2024-13-01]",
            "lastUpdated>[2024-01-01",
            "(id=1",
            "id=1)",
            "id=1 and",
            "summary=\"x\"",
        ] {
            assert!(
                Conditions::parse(bad, RecordKind::Ticket).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
