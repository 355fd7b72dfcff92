//! A record's id as the known-id set keeps it: most provider ids are numbers (ConnectWise's all
//! are), kept as integers, so a resource of a million records costs megabytes, not tens of them.
//! Any other id is kept as its text. Pure: the store and the poller both use it.

use std::fmt;

/// A record id. `Number` only for the canonical decimal form (`"0"`, `"42"`, never `"042"` or
/// `"+4"`), so turning it back into text gives exactly the id the provider sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectId {
    Number(u64),
    Text(String),
}

const NUMBER_TAG: u8 = 0;
const TEXT_TAG: u8 = 1;

impl ObjectId {
    pub fn from_text(id: &str) -> ObjectId {
        let canonical = !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && (id == "0" || !id.starts_with('0'));
        match id.parse::<u64>() {
            Ok(n) if canonical => ObjectId::Number(n),
            _ => ObjectId::Text(id.to_string()),
        }
    }

    /// The stored form: a tag byte, then 8 big-endian bytes or the text's bytes. Numbers sort
    /// in numeric order, before every text id.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ObjectId::Number(n) => {
                let mut out = Vec::with_capacity(9);
                out.push(NUMBER_TAG);
                out.extend_from_slice(&n.to_be_bytes());
                out
            }
            ObjectId::Text(s) => {
                let mut out = Vec::with_capacity(s.len().saturating_add(1));
                out.push(TEXT_TAG);
                out.extend_from_slice(s.as_bytes());
                out
            }
        }
    }

    /// Reads [`ObjectId::to_bytes`]; `None` for bytes it never writes.
    pub fn from_bytes(bytes: &[u8]) -> Option<ObjectId> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            NUMBER_TAG => Some(ObjectId::Number(u64::from_be_bytes(rest.try_into().ok()?))),
            TEXT_TAG => Some(ObjectId::Text(String::from_utf8(rest.to_vec()).ok()?)),
            _ => None,
        }
    }

    /// The id as JSON: a number stays a number.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ObjectId::Number(n) => serde_json::Value::from(*n),
            ObjectId::Text(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectId::Number(n) => write!(f, "{n}"),
            ObjectId::Text(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_decimal_ids_are_numbers_and_others_stay_text() {
        assert_eq!(ObjectId::from_text("42"), ObjectId::Number(42));
        assert_eq!(ObjectId::from_text("0"), ObjectId::Number(0));
        for text in ["042", "+4", "-4", "", "4.0", "abc", "18446744073709551616"] {
            assert_eq!(
                ObjectId::from_text(text),
                ObjectId::Text(text.into()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_id_survives_its_stored_form_and_prints_as_it_came() {
        for text in ["7", "0", "18446744073709551615", "007", "a/b", "é"] {
            let id = ObjectId::from_text(text);
            assert_eq!(ObjectId::from_bytes(&id.to_bytes()), Some(id.clone()));
            assert_eq!(id.to_string(), text);
        }
        assert_eq!(ObjectId::from_bytes(&[]), None);
        assert_eq!(ObjectId::from_bytes(&[0, 1, 2]), None);
        assert_eq!(ObjectId::from_bytes(&[9, 1]), None);
    }

    #[test]
    fn numbers_are_nine_bytes_and_sort_numerically() {
        let (two, ten) = (ObjectId::from_text("2"), ObjectId::from_text("10"));
        assert_eq!(two.to_bytes().len(), 9);
        assert!(two.to_bytes() < ten.to_bytes());
        assert_eq!(ten.to_json(), serde_json::json!(10));
        assert_eq!(ObjectId::from_text("x").to_json(), serde_json::json!("x"));
    }
}
