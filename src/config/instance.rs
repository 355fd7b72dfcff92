//! One instance file → one validated [`InstanceSpec`], or every problem found in it.
//!
//! The file holds the body Cloud Elements accepted at `POST /instances` (or the same model in
//! TOML). Values are checked where they stand, so each error carries `FILE:LINE:COL`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::element::{checked_url, conf_pointer, element, element_kind};
use super::fields::Ctx;
use super::resource;
use super::secret::{Secret, SecretRef, SecretSources, resolve_references};
use super::source::{Document, Format};
use super::spec::*;
use crate::callback::Endpoint;
use crate::signing::WebhookSecret;

const TOP_KEYS: &[&str] = &[
    "element",
    "providerData",
    "configuration",
    "tags",
    "name",
    "id",
    "description",
];

/// Configuration keys whose literal values are credentials.
const SECRET_KEYS: &[&str] = &[
    "private.key",
    "public.key",
    "event.notification.signature.key",
    "event.notification.webhook.secret",
];

/// What loading one file gave: a spec when it had no errors, and its diagnostics either way.
#[derive(Debug)]
pub struct LoadedFile {
    pub spec: Option<InstanceSpec>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads, parses and validates one instance file.
pub fn load_instance_file(path: &Path, sources: &SecretSources) -> LoadedFile {
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return failed(Diagnostic::error(
                    path,
                    None,
                    format!("file is not UTF-8 text: {e}"),
                ));
            }
        },
        Err(e) => {
            return failed(Diagnostic::error(
                path,
                None,
                format!("cannot read file: {e}"),
            ));
        }
    };
    let readable_by_others = file_mode(path).is_some_and(|m| m & 0o004 != 0);
    load_instance_text(path, &text, sources, readable_by_others)
}

/// Parses and validates instance text as if read from `path` (its extension picks JSON or
/// TOML; messages name it). The same path as [`load_instance_file`] after reading, so fuzzing
/// and tests can drive it without a file.
pub fn load_instance_text(
    path: &Path,
    text: &str,
    sources: &SecretSources,
    readable_by_others: bool,
) -> LoadedFile {
    match Document::parse(path, text, Format::of_path(path)) {
        Ok(doc) => validate(doc, sources, readable_by_others),
        Err(d) => failed(d),
    }
}

fn failed(d: Diagnostic) -> LoadedFile {
    LoadedFile {
        spec: None,
        diagnostics: vec![d],
    }
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}

/// Validates a parsed document into a spec.
pub fn validate(
    mut doc: Document,
    sources: &SecretSources,
    readable_by_others: bool,
) -> LoadedFile {
    let mut early = Diagnostics::default();
    embed_poller_configuration(&mut doc, &mut early);
    let literal_secrets = literal_secret_keys(&doc.value);
    let mut literal_values: Vec<String> = literal_secrets.iter().map(|(_, v)| v.clone()).collect();
    let resolution = resolve_references(&mut doc.value, sources, doc.path.parent());
    literal_values.extend(resolution.values);

    let mut cx = Ctx::new(&doc);
    cx.secrets = literal_values;
    cx.diags.extend(early.items);
    for (pointer, message) in resolution.errors {
        cx.error(&pointer, message);
    }
    for message in resolution.warnings {
        cx.warning(message);
    }
    if readable_by_others {
        for (key, _) in &literal_secrets {
            cx.warning(format!(
                "configuration {key:?} holds a literal secret and the file is readable by other users; \
                 use ${{credential:NAME}}, ${{file:/path}} or ${{env:NAME}}, or chmod 0600 the file"
            ));
        }
    }
    let spec = instance(&mut cx);
    let mut diagnostics = cx.diags.items;
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    diagnostics.sort_by_key(|d| (!d.is_error(), d.position.map(|p| (p.line, p.column))));
    LoadedFile {
        spec: if has_errors { None } else { spec },
        diagnostics,
    }
}

/// `event.poller.configuration` may be a string holding the JSON object: parse it in place so
/// the rest of validation sees one tree (its errors point at the string).
fn embed_poller_configuration(doc: &mut Document, diags: &mut Diagnostics) {
    let pointer = "/configuration/event.poller.configuration";
    let Some(Value::String(text)) = doc.value.pointer(pointer) else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v) => *doc.value.pointer_mut(pointer).expect("checked above") = v,
        Err(e) => diags.push(Diagnostic::error(
            &doc.path,
            Some(doc.value_position(pointer)),
            format!("event.poller.configuration holds a string that is not valid JSON: {e}"),
        )),
    }
}

fn literal_secret_keys(value: &Value) -> Vec<(String, String)> {
    let Some(Value::Object(conf)) = value.get("configuration") else {
        return Vec::new();
    };
    SECRET_KEYS
        .iter()
        .filter_map(|k| match conf.get(*k) {
            Some(Value::String(s)) if !s.is_empty() && SecretRef::parse(s).is_none() => {
                Some((k.to_string(), s.clone()))
            }
            _ => None,
        })
        .collect()
}

fn instance(cx: &mut Ctx) -> Option<InstanceSpec> {
    let doc = cx.doc;
    let root = cx.object("", "the instance", &doc.value)?;
    cx.reject_unknown("", "the instance", root, TOP_KEYS);

    let name = match root.get("name") {
        Some(v) => cx.required_string("/name", "name", v),
        None => doc
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split('.').next().unwrap_or(n).to_string()),
    };
    let id = match root.get("id") {
        Some(v) => cx.integer("/id", "id", v, 0, i64::MAX as u64),
        None => name.as_deref().map(derived_instance_id),
    };
    let tags = tags(cx, root.get("tags"));
    if root.contains_key("providerData") {
        cx.warning("providerData is accepted and ignored: pollerd authenticates with the keys in configuration");
    }
    let element_kind = element_kind(cx, root.get("element"));
    let empty = Map::new();
    let conf = match root.get("configuration") {
        Some(v) => cx
            .object("/configuration", "configuration", v)
            .unwrap_or(&empty),
        None => {
            cx.error("", "missing \"configuration\" object");
            &empty
        }
    };
    let element = element_kind.and_then(|kind| element(cx, kind, conf));
    let notifications = notifications(cx, conf);
    let interval = refresh_interval(cx, conf);
    let tls_ca = super::tls::tls_ca(cx, conf);
    // Without a valid element, resources get only the generic (http) checks.
    let resources = resource::resources(
        cx,
        conf,
        element
            .as_ref()
            .map_or(ElementKind::Http, ElementSpec::kind),
    );
    if matches!(notifications, Some(Some(_))) && resources.as_ref().is_some_and(Vec::is_empty) {
        cx.error(
            "/configuration",
            "events are enabled but no resource is configured: add event.poller.configuration",
        );
    }

    Some(InstanceSpec {
        name: name?,
        id: id?,
        file: doc.path.clone(),
        tags: tags?,
        element: element?,
        notifications: notifications.flatten(),
        refresh_interval: interval?,
        resources: resources?.into_iter().map(Arc::new).collect(),
        fingerprint: fingerprint(&doc.value, tls_ca.as_ref()?.as_ref()),
        tls_ca: tls_ca?,
    })
}

/// A stable instance id for files without `id`: the first 32 bits of SHA-256(name), below 10⁹.
pub fn derived_instance_id(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    u64::from(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ])) % 1_000_000_000
}

/// Hashes the resolved document with object keys sorted, so reordering keys (or writing the same
/// instance in TOML instead of JSON) is not a change. Resolved secrets are part of the value, and
/// so is the CA bundle's content (a renewed CA file is a change).
fn fingerprint(value: &Value, tls_ca: Option<&TlsCa>) -> u64 {
    fn feed(v: &Value, h: &mut DefaultHasher) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                h.write_u8(b'{');
                for k in keys {
                    k.hash(h);
                    feed(&m[k], h);
                }
            }
            Value::Array(items) => {
                h.write_u8(b'[');
                items.iter().for_each(|i| feed(i, h));
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = DefaultHasher::new();
    feed(value, &mut h);
    if let Some(ca) = tls_ca {
        ca.identity().hash(&mut h);
    }
    h.finish()
}

fn tags(cx: &mut Ctx, v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, t) in items.iter().enumerate() {
                out.push(cx.string(&format!("/tags/{i}"), "a tag", t)?);
            }
            Some(out)
        }
        Some(other) => {
            cx.error(
                "/tags",
                format!(
                    "tags must be an array of strings, not {}",
                    super::fields::kind(other)
                ),
            );
            None
        }
    }
}

/// `Some(None)`: events disabled (valid). `None`: errors were reported.
fn notifications(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<Option<NotificationSpec>> {
    let enabled = events_enabled(cx, conf)?;
    let callback = callback(cx, conf, enabled);
    let signature_key = optional_secret(cx, conf, "event.notification.signature.key");
    let webhook_secret = webhook_secret(cx, conf);
    let batch_size = batch_size(cx, conf)?;
    if !enabled {
        return Some(None);
    }
    let (callback_url, callback) = callback?;
    Some(Some(NotificationSpec {
        callback_url,
        callback,
        signature_key,
        webhook_secret,
        batch_size,
    }))
}

/// `event.notification.enabled`, false when not given; `None` when invalid.
fn events_enabled(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<bool> {
    let key = "event.notification.enabled";
    match conf.get(key) {
        Some(v) => cx.boolean(&conf_pointer(key), key, v),
        None => Some(false),
    }
}

/// `event.notification.callback.url`, required when events are enabled: as written, and made
/// into the endpoint deliveries send to.
fn callback(cx: &mut Ctx, conf: &Map<String, Value>, enabled: bool) -> Option<(String, Endpoint)> {
    let key = "event.notification.callback.url";
    let p = conf_pointer(key);
    let written = match conf.get(key) {
        Some(v) => cx.required_string(&p, key, v)?,
        None if enabled => {
            cx.error(
                "/configuration",
                "events are enabled but \"event.notification.callback.url\" is missing",
            );
            return None;
        }
        None => return None,
    };
    let url = checked_url(cx, &p, key, &written)?;
    // What deliveries would refuse (a user name that does not decode, a URL hyper cannot send
    // to) is an error when the file loads, not a dead letter later.
    match Endpoint::from_url(&url) {
        Ok(endpoint) => {
            warn_plain_http_callback(cx, &url, &endpoint);
            Some((written, endpoint))
        }
        Err(e) => {
            cx.error(&p, format!("{key}: {e}"));
            None
        }
    }
}

fn warn_plain_http_callback(cx: &mut Ctx, u: &reqwest::Url, endpoint: &Endpoint) {
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() == "http" && !loopback {
        cx.warning(format!(
            "callback URL {} uses plain http:// to a non-loopback host: notifications and their signatures travel unencrypted",
            endpoint.shown()
        ));
    }
}

/// `event.notification.webhook.secret`, decoded; one that is not a valid signing key is an
/// error.
fn webhook_secret(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<WebhookSecret> {
    let key = "event.notification.webhook.secret";
    let secret = optional_secret(cx, conf, key)?;
    WebhookSecret::parse(secret.expose())
        .map_err(|e| cx.error(&conf_pointer(key), format!("{key}: {e}")))
        .ok()
}

/// `event.notification.batch.size`, 1 to 100, default 10; `None` when invalid.
fn batch_size(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<usize> {
    let key = "event.notification.batch.size";
    match conf.get(key) {
        Some(v) => Some(cx.integer(&conf_pointer(key), key, v, 1, 100)? as usize),
        None => Some(10),
    }
}

fn optional_secret(cx: &mut Ctx, conf: &Map<String, Value>, key: &str) -> Option<Secret> {
    let v = conf.get(key)?;
    cx.required_string(&conf_pointer(key), key, v)
        .map(Secret::new)
}

fn refresh_interval(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<Duration> {
    let key = "event.poller.refresh_interval";
    match conf.get(key) {
        // Minutes, decimals allowed: "0.05" is 3 s. At most a week.
        Some(v) => {
            let minutes = cx.number(&conf_pointer(key), key, v, 0.0, 7.0 * 24.0 * 60.0)?;
            let d = Duration::from_secs_f64(minutes * 60.0);
            if d < Duration::from_millis(100) {
                cx.error(
                    &conf_pointer(key),
                    format!("{key} must be at least 0.002 minutes (100 ms)"),
                );
                return None;
            }
            Some(d)
        }
        None => Some(Duration::from_secs(15 * 60)),
    }
}
