//! Validated, typed instance specs: what the rest of pollerd works from. Nothing here knows
//! whether the instance came from JSON or TOML, or how its values were spelled.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::secret::Secret;
use crate::callback::Endpoint;
use crate::dates::{DatePattern, Zone};
use crate::intern::Interner;
use crate::signing::WebhookSecret;
use crate::template::UrlTemplate;
pub use crate::tls_roots::TlsCa;

#[derive(Clone, Debug)]
pub struct InstanceSpec {
    pub name: String,
    /// `instanceId` in payloads: the file's numeric `id`, or a stable number derived from the name.
    pub id: u64,
    pub file: PathBuf,
    pub tags: Vec<String>,
    pub element: ElementSpec,
    /// `None` when `event.notification.enabled` is false or absent: loaded, but not polled.
    pub notifications: Option<NotificationSpec>,
    pub refresh_interval: Duration,
    /// Shared with the resources' poll tasks, which never clone one.
    pub resources: Vec<Arc<ResourceSpec>>,
    /// `tls.caFile`: a private CA trusted for this instance's provider and callback, on top of
    /// the system roots.
    pub tls_ca: Option<TlsCa>,
    /// Equal fingerprints mean identical behaviour: the supervisor restarts only what changed.
    pub fingerprint: u64,
}

impl InstanceSpec {
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources.iter().find(|r| r.name == name).map(|r| &**r)
    }
}

#[derive(Clone, Debug)]
pub enum ElementSpec {
    ConnectWise(ConnectWiseSpec),
    Http(HttpSpec),
}

impl ElementSpec {
    pub fn kind(&self) -> ElementKind {
        match self {
            ElementSpec::ConnectWise(_) => ElementKind::ConnectWise,
            ElementSpec::Http(_) => ElementKind::Http,
        }
    }

    /// The element key as Cloud Elements spelled it.
    pub fn key(&self) -> &'static str {
        self.kind().key()
    }

    /// `hubKey` in event payloads.
    pub fn hub_key(&self) -> &'static str {
        self.kind().hub_key()
    }

    pub fn base_url(&self) -> &str {
        match self {
            ElementSpec::ConnectWise(c) => &c.base_url,
            ElementSpec::Http(h) => &h.base_url,
        }
    }
}

/// Which element an instance uses, as its `element.key` names it. What differs between
/// elements in validation (page sizes, paging, keys) asks this, not the key text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementKind {
    /// `connectwisecrmrest`: ConnectWise Manage's REST API.
    ConnectWise,
    /// `http`: any JSON REST API.
    Http,
}

impl ElementKind {
    /// Every element pollerd supports, in the order messages list them.
    pub const ALL: [ElementKind; 2] = [ElementKind::ConnectWise, ElementKind::Http];

    /// The key in `element.key` and in event payloads.
    pub const fn key(self) -> &'static str {
        match self {
            ElementKind::ConnectWise => "connectwisecrmrest",
            ElementKind::Http => "http",
        }
    }

    pub fn from_key(key: &str) -> Option<ElementKind> {
        ElementKind::ALL.into_iter().find(|kind| kind.key() == key)
    }

    /// `hubKey` in event payloads.
    pub const fn hub_key(self) -> &'static str {
        match self {
            ElementKind::ConnectWise => "crm",
            ElementKind::Http => "general",
        }
    }

    /// The largest `pageSize` a resource may ask for.
    pub const fn max_page_size(self) -> u32 {
        match self {
            ElementKind::ConnectWise => 1000,
            ElementKind::Http => 100_000,
        }
    }

    /// How a resource pages when it does not say.
    pub fn default_paging(self) -> Paging {
        match self {
            ElementKind::ConnectWise => Paging::Keyset,
            ElementKind::Http => Paging::Link,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConnectWiseSpec {
    pub base_url: String,
    pub company: String,
    pub public_key: Secret,
    pub private_key: Secret,
    /// ConnectWise rejects requests without it; optional only so the seed example loads.
    pub client_id: Option<String>,
    /// `Authorization` (Basic `company+public:private`) and `clientId`, as sent.
    pub request_headers: RequestHeaders,
}

#[derive(Clone, Debug)]
pub struct HttpSpec {
    pub base_url: String,
    /// Header values may carry API keys, so they are secrets.
    pub headers: Vec<(String, Secret)>,
    pub auth: Option<HttpAuth>,
    /// `headers` then `auth`'s `Authorization`, as sent.
    pub request_headers: RequestHeaders,
}

/// The headers every request to the provider carries, parsed when the file was loaded (so a
/// value `check` passes is one the daemon can send) and marked sensitive.
pub type RequestHeaders = Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>;

#[derive(Clone, Debug)]
pub enum HttpAuth {
    Basic { user: String, password: Secret },
    Bearer { token: Secret },
}

#[derive(Clone)]
pub struct NotificationSpec {
    /// `event.notification.callback.url` as written.
    pub callback_url: String,
    /// The same URL ready to send to: what deliveries use.
    pub callback: Endpoint,
    pub signature_key: Option<Secret>,
    /// The `whsec_…` Standard Webhooks secret, decoded into its key bytes (Debug shows
    /// `whsec_***`).
    pub webhook_secret: Option<WebhookSecret>,
    /// Events per notification, 1–100.
    pub batch_size: usize,
}

impl std::fmt::Debug for NotificationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The callback URL may hold a password or a token in its query: only the endpoint,
        // which shows neither, is shown.
        f.debug_struct("NotificationSpec")
            .field("callback", &self.callback)
            .field("signature_key", &self.signature_key)
            .field("webhook_secret", &self.webhook_secret)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct ResourceSpec {
    /// The key in `event.poller.configuration`, e.g. `contacts`; also `objectType` in payloads.
    pub name: String,
    pub url: UrlTemplate,
    pub id_field: FieldPath,
    pub updated: DateField,
    /// Without it every event is `UPDATED`.
    pub created: Option<DateField>,
    pub page_size: Option<u32>,
    pub poll_delay: Duration,
    pub created_check_tolerance: Duration,
    pub filter_by_updated_date: bool,
    pub filter_by_current_date: bool,
    pub paging: Paging,
    /// Where the very first run starts; `None` = when the resource was first enabled.
    pub backfill_since: Option<DateTime<Utc>>,
    /// For the `http` element: dotted path to the records array; `None` = the body is the array.
    pub items_path: Option<FieldPath>,
    /// `deletedCheckInterval` and its options: DELETED events by reconciling ids; `None` = off.
    pub deleted_check: Option<DeletedCheck>,
}

/// How a resource finds deleted records ([`crate::poller::reconcile`]).
#[derive(Clone, Debug)]
pub struct DeletedCheck {
    /// `deletedCheckInterval`: how often a reconcile lists every id.
    pub interval: Duration,
    /// `deletedMaxFraction`: the largest share of the known ids one reconcile may delete without
    /// `--allow-mass-delete`.
    pub max_fraction: f64,
    /// `idsUrl` (http only): a listing of ids to reconcile through instead of `url`.
    pub ids_url: Option<UrlTemplate>,
}

#[derive(Clone, Debug)]
pub struct DateField {
    pub field: FieldPath,
    pub pattern: DatePattern,
    pub zone: Zone,
}

/// How the next page of a resource is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paging {
    /// ConnectWise forward-only keyset paging by id (`pageId`).
    Keyset,
    /// Offset paging: `param`=1,2,… with the page size.
    Page { param: String },
    /// Follow `Link: <…>; rel="next"`.
    Link,
    /// Read the next cursor from `field` of the body and send it as `param`.
    Cursor { field: FieldPath, param: String },
}

/// A dotted path into a JSON record (`_info.lastUpdated`). Interned ([`crate::intern`]): the
/// resources of ten thousand instances written from one template hold each path once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(Arc<FieldPathParts>);

#[derive(Debug, PartialEq, Eq)]
struct FieldPathParts {
    source: String,
    parts: Vec<String>,
}

static FIELD_PATHS: LazyLock<Interner<FieldPathParts>> = LazyLock::new(Interner::default);

impl FieldPath {
    pub fn parse(s: &str) -> Option<FieldPath> {
        if s.is_empty() || s.split('.').any(str::is_empty) {
            return None;
        }
        let parts = FIELD_PATHS.get_or_compile(s, || {
            Ok::<_, std::convert::Infallible>(FieldPathParts {
                source: s.to_string(),
                parts: s.split('.').map(str::to_string).collect(),
            })
        });
        parts.ok().map(FieldPath)
    }

    pub fn as_str(&self) -> &str {
        &self.0.source
    }

    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.0.parts.iter().try_fold(value, |v, p| match v {
            Value::Object(m) => m.get(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_path_reads_nested_values() {
        let v = serde_json::json!({"_info": {"lastUpdated": "x"}, "a": [1, {"b": 2}]});
        assert_eq!(
            FieldPath::parse("_info.lastUpdated").unwrap().get(&v),
            Some(&Value::from("x"))
        );
        assert_eq!(
            FieldPath::parse("a.1.b").unwrap().get(&v),
            Some(&Value::from(2))
        );
        assert_eq!(FieldPath::parse("a.5").unwrap().get(&v), None);
        assert!(FieldPath::parse("a..b").is_none());
    }

    #[test]
    fn a_loaded_specs_debug_shows_no_secret() {
        let text = r#"{
          "element": {"key": "connectwisecrmrest"},
          "name": "debugged",
          "configuration": {
            "baseUrl": "https://api.example.com/v4_6_release/apis/3.0",
            "company": "acme",
            "public.key": "PUBLICKEY1",
            "private.key": "PRIVATEKEY2",
            "connectwise.clientID": "client-1",
            "event.notification.enabled": true,
            "event.notification.callback.url": "https://hook-user:PASSWORD3@hooks.example.com/cw?token=TOKEN4",
            "event.notification.signature.key": "SIGNATUREKEY5",
            "event.notification.webhook.secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "event.poller.configuration": {
              "contacts": {
                "url": "/hubs/crm/contacts",
                "datesConfiguration": {
                  "updatedDateField": "_info.lastUpdated",
                  "updatedDateFormat": "yyyy-MM-dd'T'HH:mm:ss'Z'"
                }
              }
            }
          }
        }"#;
        let loaded = crate::config::load_instance_text(
            std::path::Path::new("debugged.json"),
            text,
            &crate::config::SecretSources::default(),
            false,
        );
        let spec = loaded.spec.expect("the instance loads");
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("https://hooks.example.com:443/cw?…"),
            "{shown}"
        );
        for secret in [
            "PUBLICKEY1",
            "PRIVATEKEY2",
            "PASSWORD3",
            "TOKEN4",
            "SIGNATUREKEY5",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
