//! Hub URLs (`/hubs/crm/contacts`) → native ConnectWise endpoints.
//!
//! Cloud Elements instances name their resources with normalised "hub" URLs; ConnectWise has its
//! own paths. [`native_request`] maps the path, keeps anything after the object segment
//! (`/hubs/crm/contacts/42` → `/company/contacts/42`), splits the query into decoded pairs and
//! replaces a CEQL `where` parameter with ConnectWise `conditions`
//! (see [`crate::ceql::where_to_conditions`]). A path that is not under `/hubs/` is already a
//! native ConnectWise path and is kept as is.

use crate::ceql::{CeqlError, where_to_conditions};

/// The date a ConnectWise object records its creation in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreatedDate {
    /// `_info.dateEntered`.
    DateEntered,
    /// None: only `_info.lastUpdated`, so created and updated cannot be told apart.
    NotRecorded,
    /// Not known to pollerd.
    Unknown,
}

/// A ConnectWise object pollerd knows: the hub name instances use, the native endpoint it
/// stands for, and where it records its creation.
#[derive(Clone, Copy, Debug)]
pub struct ConnectWiseObject {
    pub hub_name: &'static str,
    pub endpoint: &'static str,
    pub created: CreatedDate,
}

impl ConnectWiseObject {
    /// The endpoint's last segment (`/company/companies` → `companies`).
    pub fn native_name(&self) -> &'static str {
        self.endpoint.rsplit('/').next().unwrap_or(self.endpoint)
    }

    /// Whether a resource URL's path, hub or native, names this object.
    pub fn named_in(&self, path: &str) -> bool {
        path.contains(self.hub_name) || path.contains(self.native_name())
    }
}

const fn object(
    hub_name: &'static str,
    endpoint: &'static str,
    created: CreatedDate,
) -> ConnectWiseObject {
    ConnectWiseObject {
        hub_name,
        endpoint,
        created,
    }
}

/// Every ConnectWise object pollerd knows, by hub name: the one table of them.
pub const CONNECTWISE_OBJECTS: [ConnectWiseObject; 8] = [
    object("contacts", "/company/contacts", CreatedDate::NotRecorded),
    object(
        "organizations",
        "/company/companies",
        CreatedDate::DateEntered,
    ),
    object("accounts", "/company/companies", CreatedDate::DateEntered),
    object("incidents", "/service/tickets", CreatedDate::DateEntered),
    object(
        "opportunities",
        "/sales/opportunities",
        CreatedDate::Unknown,
    ),
    object("activities", "/sales/activities", CreatedDate::Unknown),
    object("time-entries", "/time/entries", CreatedDate::Unknown),
    object(
        "configurations",
        "/company/configurations",
        CreatedDate::DateEntered,
    ),
];

/// A request for the ConnectWise API: a path relative to the instance's `baseUrl` and the
/// query parameters, decoded, in their original order (the HTTP client encodes them again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRequest {
    pub path: String,
    pub query: Vec<(String, String)>,
}

/// Why a resource URL cannot be turned into a ConnectWise request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error(
        "unknown hub object '{object}' in '{url}'; supported: {}",
        supported_objects()
    )]
    UnknownObject { url: String, object: String },
    #[error(
        "hub URL '{url}' names no object; expected /hubs/<hub>/<object>, objects: {}",
        supported_objects()
    )]
    MissingObject { url: String },
    #[error("in the 'where' parameter of '{url}': {source}")]
    Where {
        url: String,
        #[source]
        source: CeqlError,
    },
}

fn supported_objects() -> String {
    CONNECTWISE_OBJECTS
        .iter()
        .map(|object| object.hub_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The ConnectWise path of a hub object (`contacts` → `/company/contacts`).
pub fn native_path_for(hub_object: &str) -> Option<&'static str> {
    CONNECTWISE_OBJECTS
        .iter()
        .find(|object| object.hub_name == hub_object)
        .map(|object| object.endpoint)
}

/// Turns a rendered resource URL (path and query, relative to `baseUrl`) into a ConnectWise
/// request.
///
/// Query values are percent-decoded when they hold valid `%XX` escapes that decode to UTF-8;
/// otherwise they are taken as raw text, since rendered URLs usually hold `'`, `>` and spaces
/// unencoded (and a `like '%ab%'` pattern must survive). `+` is kept as `+` (rendered dates
/// carry offsets like `+02:00`); a literal `&` inside a value must be written `%26`.
pub fn native_request(rendered_url: &str) -> Result<NativeRequest, HubError> {
    let (raw_path, raw_query) = match rendered_url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rendered_url, None),
    };
    let path = native_path(rendered_url, raw_path)?;
    let mut query = Vec::new();
    for pair in raw_query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode_component(name), decode_component(value));
        if name == "where" {
            let conditions = where_to_conditions(&value).map_err(|source| HubError::Where {
                url: rendered_url.to_string(),
                source,
            })?;
            query.push(("conditions".to_string(), conditions));
        } else {
            query.push((name, value));
        }
    }
    Ok(NativeRequest { path, query })
}

fn native_path(url: &str, raw_path: &str) -> Result<String, HubError> {
    let Some(after_hubs) = raw_path.strip_prefix("/hubs/") else {
        return Ok(raw_path.to_string());
    };
    // after_hubs = "<hub>/<object>[/rest]"
    let mut segments = after_hubs.splitn(3, '/');
    let _hub = segments.next();
    let object = segments.next().filter(|object| !object.is_empty());
    let Some(object) = object else {
        return Err(HubError::MissingObject {
            url: url.to_string(),
        });
    };
    let Some(native) = native_path_for(object) else {
        return Err(HubError::UnknownObject {
            url: url.to_string(),
            object: object.to_string(),
        });
    };
    Ok(match segments.next() {
        Some(rest) if !rest.is_empty() => format!("{native}/{rest}"),
        _ => native.to_string(),
    })
}

/// Percent-decodes each run of `%XX` escapes that spells UTF-8 (`%2B09%3A00` → `+09:00`, as
/// templates encode values); any other `%` stays as written, so an operator's `like '%ab%'`
/// survives beside an encoded date. A literal `%` followed by two hex digits reads as an escape:
/// write it `%25`.
fn decode_component(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let (run, raw_len) = escape_run(&rest[start..]);
        match std::str::from_utf8(&run) {
            Ok(decoded) if raw_len > 0 => out.push_str(decoded),
            _ if raw_len > 0 => out.push_str(&rest[start..start + raw_len]),
            _ => out.push('%'),
        }
        rest = &rest[start + raw_len.max(1)..];
    }
    out.push_str(rest);
    out
}

/// The bytes of the `%XX` escapes at the start of `text`, and how many characters they take.
fn escape_run(text: &str) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut at = 0;
    while let Some(escape) = text.get(at..at + 3) {
        let Some(hex) = escape.strip_prefix('%') else {
            break;
        };
        let Ok(byte) = u8::from_str_radix(hex, 16) else {
            break;
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            break;
        }
        bytes.push(byte);
        at += 3;
    }
    (bytes, at)
}

#[cfg(test)]
mod tests {
    use super::decode_component;

    #[test]
    fn encoded_values_decode_beside_an_operators_own_percent_signs() {
        assert_eq!(decode_component("a%2B09%3A00"), "a+09:00");
        assert_eq!(
            decode_component("name like '%ab%' and lastUpdated>'2001-07-04T21:08:56%2B09:00'"),
            "name like '%ab%' and lastUpdated>'2001-07-04T21:08:56+09:00'"
        );
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(decode_component("%+1x"), "%+1x");
        assert_eq!(decode_component("caf%C3%A9 %C3"), "café %C3");
        assert_eq!(decode_component("%25ab"), "%ab");
    }
}
