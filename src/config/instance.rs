//! One instance file → one validated [`InstanceSpec`], or every problem found in it.
//!
//! The file holds the body Cloud Elements accepted at `POST /instances` (or the same model in
//! TOML). Values are checked where they stand, so each error carries `FILE:LINE:COL`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::fields::Ctx;
use super::resource;
use super::secret::{Secret, SecretRef, SecretSources, resolve_references};
use super::source::{Document, Format, child_pointer};
use super::spec::*;

const TOP_KEYS: &[&str] = &[
    "element",
    "providerData",
    "configuration",
    "tags",
    "name",
    "id",
    "description",
];

const EVENT_KEYS: &[&str] = &[
    "event.notification.enabled",
    "event.notification.callback.url",
    "event.notification.signature.key",
    "event.notification.webhook.secret",
    "event.notification.batch.size",
    "event.poller.refresh_interval",
    "event.poller.configuration",
    "event.poller.urls",
];
const CONNECTWISE_KEYS: &[&str] = &[
    "baseUrl",
    "company",
    "public.key",
    "private.key",
    "connectwise.clientID",
    "clientId",
];
const HTTP_KEYS: &[&str] = &["baseUrl", "headers", "auth"];
/// Keys every element accepts.
const COMMON_KEYS: &[&str] = &[super::tls::TLS_CA_FILE_KEY];
/// Configuration keys of the hosted service that mean nothing here, accepted without a word.
const IGNORED_QUIETLY: &[&str] = &["filter.response.nulls"];

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
    let resolution = resolve_references(&mut doc.value, sources);
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
    let element_key = element_key(cx, root.get("element"));
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
    let element = element_key.and_then(|key| element(cx, &key, conf));
    let notifications = notifications(cx, conf);
    let interval = refresh_interval(cx, conf);
    let tls_ca = super::tls::tls_ca(cx, conf);
    let resources = resource::resources(
        cx,
        conf,
        matches!(element, Some(ElementSpec::ConnectWise(_))),
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
        resources: resources?,
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
        ca.pem.hash(&mut h);
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

fn element_key(cx: &mut Ctx, v: Option<&Value>) -> Option<String> {
    let Some(v) = v else {
        cx.error(
            "",
            "missing \"element\": write \"element\": {\"key\": \"connectwisecrmrest\"}",
        );
        return None;
    };
    let obj = cx.object("/element", "element", v)?;
    cx.reject_unknown("/element", "element", obj, &["key"]);
    let Some(key) = obj.get("key") else {
        cx.error("/element", "missing element \"key\"");
        return None;
    };
    let key = cx.required_string("/element/key", "element key", key)?;
    if !ELEMENT_KEYS.contains(&key.as_str()) {
        cx.error(
            "/element/key",
            format!(
                "unsupported element {key:?}; supported elements: {}",
                ELEMENT_KEYS.join(", ")
            ),
        );
        return None;
    }
    Some(key)
}

fn conf_pointer(key: &str) -> String {
    child_pointer("/configuration", key)
}

fn element(cx: &mut Ctx, key: &str, conf: &Map<String, Value>) -> Option<ElementSpec> {
    let own: &[&str] = if key == "http" {
        HTTP_KEYS
    } else {
        CONNECTWISE_KEYS
    };
    for k in conf.keys() {
        if own.contains(&k.as_str())
            || COMMON_KEYS.contains(&k.as_str())
            || EVENT_KEYS.contains(&k.as_str())
            || IGNORED_QUIETLY.contains(&k.as_str())
        {
            continue;
        }
        if k.starts_with("oauth.") {
            cx.warning(format!(
                "configuration {k:?} is accepted and ignored: {key} does not use OAuth here"
            ));
        } else if k.starts_with("event.") {
            cx.key_error(
                &conf_pointer(k),
                format!(
                    "unknown key {k:?}; event keys are: {}",
                    EVENT_KEYS.join(", ")
                ),
            );
        } else {
            cx.key_error(
                &conf_pointer(k),
                format!(
                    "unknown configuration key {k:?} for element {key}; expected one of: {}",
                    own.join(", ")
                ),
            );
        }
    }
    let base_url = required(cx, conf, "baseUrl")
        .and_then(|u| check_url(cx, &conf_pointer("baseUrl"), "baseUrl", &u));
    if key == "http" {
        return http_element(cx, conf, base_url);
    }
    let company = required(cx, conf, "company");
    let public_key = required(cx, conf, "public.key");
    let private_key = required(cx, conf, "private.key");
    let client_id = ["connectwise.clientID", "clientId"]
        .iter()
        .find_map(|k| conf.get(*k).map(|v| (*k, v)))
        .and_then(|(k, v)| cx.required_string(&conf_pointer(k), k, v));
    if client_id.is_none()
        && !conf.contains_key("connectwise.clientID")
        && !conf.contains_key("clientId")
    {
        cx.warning(
            "no \"connectwise.clientID\": ConnectWise rejects API requests without a clientId; \
             register one at developer.connectwise.com and add it to configuration",
        );
    }
    Some(ElementSpec::ConnectWise(ConnectWiseSpec {
        base_url: base_url?,
        company: company?,
        public_key: Secret::new(public_key?),
        private_key: Secret::new(private_key?),
        client_id,
    }))
}

fn http_element(
    cx: &mut Ctx,
    conf: &Map<String, Value>,
    base_url: Option<String>,
) -> Option<ElementSpec> {
    let mut headers = Vec::new();
    if let Some(v) = conf.get("headers") {
        let p = conf_pointer("headers");
        if let Some(map) = cx.object(&p, "headers", v) {
            for (name, value) in map {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    cx.key_error(
                        &child_pointer(&p, name),
                        format!("invalid HTTP header name {name:?}"),
                    );
                }
                if let Some(value) = cx.string(&child_pointer(&p, name), "a header value", value) {
                    headers.push((name.clone(), Secret::new(value)));
                }
            }
        }
    }
    let auth = match conf.get("auth") {
        None => None,
        Some(v) => Some(http_auth(cx, v)?),
    };
    Some(ElementSpec::Http(HttpSpec {
        base_url: base_url?,
        headers,
        auth,
    }))
}

fn http_auth(cx: &mut Ctx, v: &Value) -> Option<HttpAuth> {
    let p = conf_pointer("auth");
    let obj = cx.object(&p, "auth", v)?;
    let kind = obj.get("type").and_then(Value::as_str);
    let field = |cx: &mut Ctx, name: &str| match obj.get(name) {
        Some(v) => cx.required_string(&child_pointer(&p, name), name, v),
        None => {
            cx.error(&p, format!("auth needs \"{name}\""));
            None
        }
    };
    match kind {
        Some("basic") => {
            cx.reject_unknown(&p, "auth", obj, &["type", "user", "password"]);
            let user = field(cx, "user");
            let password = field(cx, "password");
            Some(HttpAuth::Basic {
                user: user?,
                password: Secret::new(password?),
            })
        }
        Some("bearer") => {
            cx.reject_unknown(&p, "auth", obj, &["type", "token"]);
            Some(HttpAuth::Bearer {
                token: Secret::new(field(cx, "token")?),
            })
        }
        _ => {
            cx.error(
                &p,
                "auth \"type\" must be \"basic\" (user, password) or \"bearer\" (token)",
            );
            None
        }
    }
}

fn required(cx: &mut Ctx, conf: &Map<String, Value>, key: &str) -> Option<String> {
    match conf.get(key) {
        Some(v) => cx.required_string(&conf_pointer(key), key, v),
        None => {
            cx.error("/configuration", format!("missing configuration {key:?}"));
            None
        }
    }
}

/// An absolute http(s) URL with a host.
pub fn check_url(cx: &mut Ctx, pointer: &str, name: &str, url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            Some(url.to_string())
        }
        Ok(u) => {
            cx.error(
                pointer,
                format!(
                    "{name} must be an http:// or https:// URL, not {}:",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            cx.error(pointer, format!("{name} is not a valid URL: {e}"));
            None
        }
    }
}

/// `Some(None)`: events disabled (valid). `None`: errors were reported.
fn notifications(cx: &mut Ctx, conf: &Map<String, Value>) -> Option<Option<NotificationSpec>> {
    let p = conf_pointer;
    let enabled = match conf.get("event.notification.enabled") {
        Some(v) => cx.boolean(
            &p("event.notification.enabled"),
            "event.notification.enabled",
            v,
        )?,
        None => false,
    };
    let callback = match conf.get("event.notification.callback.url") {
        Some(v) => cx
            .required_string(
                &p("event.notification.callback.url"),
                "event.notification.callback.url",
                v,
            )
            .and_then(|u| {
                check_url(
                    cx,
                    &p("event.notification.callback.url"),
                    "event.notification.callback.url",
                    &u,
                )
            }),
        None if enabled => {
            cx.error(
                "/configuration",
                "events are enabled but \"event.notification.callback.url\" is missing",
            );
            None
        }
        None => None,
    };
    if let Some(url) = &callback {
        if let Ok(u) = reqwest::Url::parse(url) {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if u.scheme() == "http" && !loopback {
                cx.warning(format!(
                    "callback URL {url} uses plain http:// to a non-loopback host: notifications and their signatures travel unencrypted"
                ));
            }
        }
    }
    let signature_key = optional_secret(cx, conf, "event.notification.signature.key");
    let webhook_secret = optional_secret(cx, conf, "event.notification.webhook.secret");
    if let Some(s) = &webhook_secret {
        if let Err(e) = crate::delivery::sign::WebhookSecret::parse(s.expose()) {
            cx.error(
                &p("event.notification.webhook.secret"),
                format!("event.notification.webhook.secret: {e}"),
            );
        }
    }
    let batch_size = match conf.get("event.notification.batch.size") {
        Some(v) => cx.integer(
            &p("event.notification.batch.size"),
            "event.notification.batch.size",
            v,
            1,
            100,
        )? as usize,
        None => 10,
    };
    if !enabled {
        return Some(None);
    }
    Some(Some(NotificationSpec {
        callback_url: callback?,
        signature_key,
        webhook_secret,
        batch_size,
    }))
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
