//! The element part of an instance: which element, and its connection settings
//! (`baseUrl`, credentials, headers, auth).

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::secret::Secret;
use super::source::child_pointer;
use super::spec::*;

pub(super) const EVENT_KEYS: &[&str] = &[
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

pub(super) fn element_key(cx: &mut Ctx, v: Option<&Value>) -> Option<String> {
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

pub(super) fn conf_pointer(key: &str) -> String {
    child_pointer("/configuration", key)
}

pub(super) fn element(cx: &mut Ctx, key: &str, conf: &Map<String, Value>) -> Option<ElementSpec> {
    let own: &[&str] = if key == "http" {
        HTTP_KEYS
    } else {
        CONNECTWISE_KEYS
    };
    for k in conf.keys() {
        if own.contains(&k.as_str())
            || EVENT_KEYS.contains(&k.as_str())
            || IGNORED_QUIETLY.contains(&k.as_str())
            || COMMON_KEYS.contains(&k.as_str())
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
pub(super) fn check_url(cx: &mut Ctx, pointer: &str, name: &str, url: &str) -> Option<String> {
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
