//! The headers an instance's provider requests carry (operator `headers`, `auth`, ConnectWise's
//! `Authorization` and `clientId`), parsed into [`HeaderName`]/[`HeaderValue`] when the file is
//! loaded, so that `pollerd check` refuses exactly what the daemon would and the elements get
//! headers that are known to be valid.
//!
//! Every value is marked sensitive (it may be an API key): `Debug` of a [`HeaderValue`] then
//! prints `Sensitive`, never the value. Errors name the header, never its value.

use reqwest::header::{HeaderName, HeaderValue};

/// Why a header cannot be sent; the text never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("invalid HTTP header name {0:?}")]
    Name(String),
    #[error(
        "{0} is not valid HTTP header text (control characters such as a newline, a NUL or DEL \
         are not allowed)"
    )]
    Value(String),
}

/// `name` as a header name (`X-Api-Key`; case is not kept, as HTTP/2 requires).
pub fn header_name(name: &str) -> Result<HeaderName, HeaderError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.to_string()))
}

/// `text` as a header value, marked sensitive; `what` names it in the error ("header X-Api-Key").
pub fn sensitive_value(text: &str, what: &str) -> Result<HeaderValue, HeaderError> {
    let mut value =
        HeaderValue::from_str(text).map_err(|_| HeaderError::Value(what.to_string()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Bearer TOKEN`; the token is the operator's, so it may not be valid header text.
pub fn bearer_authorization(token: &str) -> Result<HeaderValue, HeaderError> {
    sensitive_value(&format!("Bearer {token}"), "auth token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_without_the_value_in_the_error() {
        for bad in ["a\nb", "a\u{7}b", "a\rb", "a\0b", "a\u{7f}b"] {
            let e = sensitive_value(bad, "header X-Api-Key").unwrap_err();
            assert!(e.to_string().starts_with("header X-Api-Key is not valid"));
            assert!(!e.to_string().contains(bad));
        }
        assert!(bearer_authorization("tok\nen").is_err());
    }

    #[test]
    fn valid_values_are_sensitive() {
        let v = sensitive_value("k3y with spaces\tand tab", "h").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(format!("{v:?}"), "Sensitive");
        assert!(header_name("X-Api-Key").is_ok());
        assert_eq!(
            header_name("bad name").unwrap_err().to_string(),
            "invalid HTTP header name \"bad name\""
        );
    }
}
