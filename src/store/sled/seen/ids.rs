//! The latest date per object id, compact: a run holds the seen set of every record it reads, so
//! a backfill of a million records held ~70 MB with one `String` key per id. Ids that are
//! canonical decimal numbers (ConnectWise's are) are kept as `u64` (~20 bytes each); others as
//! strings.

use std::collections::HashMap;

/// Id → latest updated date (epoch milliseconds).
#[derive(Default)]
pub(in crate::store::sled) struct IdDates {
    numeric: HashMap<u64, i64>,
    other: HashMap<String, i64>,
}

/// `id` as a number when it is one written canonically ("7", not "07" or "+7"), so that the
/// number gives back exactly the same text.
fn numeric(id: &str) -> Option<u64> {
    let canonical = !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    canonical.then(|| id.parse().ok()).flatten()
}

impl IdDates {
    pub(in crate::store::sled) fn get(&self, id: &str) -> Option<i64> {
        match numeric(id) {
            Some(n) => self.numeric.get(&n).copied(),
            None => self.other.get(id).copied(),
        }
    }

    /// Keeps the later of the known date and `ms`.
    pub(in crate::store::sled) fn merge(&mut self, id: &str, ms: i64) {
        let date = match numeric(id) {
            Some(n) => self.numeric.entry(n).or_insert(ms),
            None => self.other.entry(id.to_string()).or_insert(ms),
        };
        *date = (*date).max(ms);
    }

    pub(in crate::store::sled) fn len(&self) -> usize {
        self.numeric.len() + self.other.len()
    }

    /// Every (id, date) with a date at or after `cutoff`, ids as text.
    pub(in crate::store::sled) fn at_or_after(
        &self,
        cutoff: i64,
    ) -> impl Iterator<Item = (IdText<'_>, i64)> {
        let numbers = self.numeric.iter().map(|(n, ms)| (IdText::number(*n), *ms));
        let texts = self.other.iter().map(|(id, ms)| (IdText::Text(id), *ms));
        numbers.chain(texts).filter(move |(_, ms)| *ms >= cutoff)
    }
}

/// An id's text, without allocating for a numeric one.
pub(in crate::store::sled) enum IdText<'a> {
    Text(&'a str),
    Number { digits: [u8; 20], start: u8 },
}

impl IdText<'_> {
    fn number(mut n: u64) -> IdText<'static> {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        IdText::Number {
            digits,
            start: start as u8,
        }
    }
}

impl AsRef<str> for IdText<'_> {
    fn as_ref(&self) -> &str {
        match self {
            IdText::Text(text) => text,
            IdText::Number { digits, start } => {
                std::str::from_utf8(&digits[*start as usize..]).expect("ASCII digits")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_other_ids_keep_their_own_text() {
        let mut dates = IdDates::default();
        let ids = [
            "7",
            "07",
            "0",
            "+7",
            "",
            "18446744073709551615",
            "18446744073709551616",
            "abc",
        ];
        for (ms, id) in ids.iter().enumerate() {
            dates.merge(id, ms as i64);
        }
        assert_eq!(dates.len(), ids.len(), "no two ids share an entry");
        for (ms, id) in ids.iter().enumerate() {
            assert_eq!(dates.get(id), Some(ms as i64), "{id:?}");
        }
        let mut texts: Vec<(String, i64)> = dates
            .at_or_after(0)
            .map(|(id, ms)| (id.as_ref().to_string(), ms))
            .collect();
        texts.sort_by_key(|(_, ms)| *ms);
        let expected: Vec<(String, i64)> = ids
            .iter()
            .enumerate()
            .map(|(ms, id)| (id.to_string(), ms as i64))
            .collect();
        assert_eq!(texts, expected);
    }

    #[test]
    fn the_later_date_wins_and_the_cutoff_filters() {
        let mut dates = IdDates::default();
        dates.merge("42", 10);
        dates.merge("42", 5);
        dates.merge("x", 3);
        assert_eq!(dates.get("42"), Some(10));
        let kept: Vec<String> = dates
            .at_or_after(4)
            .map(|(id, _)| id.as_ref().to_string())
            .collect();
        assert_eq!(kept, ["42"]);
    }
}
