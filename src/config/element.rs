//! The element part of an instance: which element, and its connection settings
//! (`baseUrl`, credentials, headers, auth).

use serde_json::{Map, Value};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use super::fields::Ctx;
use super::headers;
use super::secret::Secret;
use super::source::child_pointer;
use super::spec::*;
use crate::http_util::basic_authorization;

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
/// The header ConnectWise reads its application id from (names are sent lower case).
const CLIENT_ID: HeaderName = HeaderName::from_static("clientid");
/// Keys every element accepts.
const COMMON_KEYS: &[&str] = &[super::tls::TLS_CA_FILE_KEY];
/// Configuration keys of the hosted service that mean nothing here, accepted without a word.
const IGNORED_QUIETLY: &[&str] = &["filter.response.nulls"];

pub(super) fn element_kind(cx: &mut Ctx, v: Option<&Value>) -> Option<ElementKind> {
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
    let kind = ElementKind::from_key(&key);
    if kind.is_none() {
        let supported: Vec<&str> = ElementKind::ALL.iter().map(|k| k.key()).collect();
        cx.error(
            "/element/key",
            format!(
                "unsupported element {key:?}; supported elements: {}",
                supported.join(", ")
            ),
        );
    }
    kind
}

pub(super) fn conf_pointer(key: &str) -> String {
    child_pointer("/configuration", key)
}

pub(super) fn element(
    cx: &mut Ctx,
    kind: ElementKind,
    conf: &Map<String, Value>,
) -> Option<ElementSpec> {
    let key = kind.key();
    let own: &[&str] = match kind {
        ElementKind::ConnectWise => CONNECTWISE_KEYS,
        ElementKind::Http => HTTP_KEYS,
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
    if kind == ElementKind::Http {
        return http_element(cx, conf, base_url);
    }
    let company = required(cx, conf, "company");
    let public_key = required(cx, conf, "public.key");
    let private_key = required(cx, conf, "private.key");
    let client_id_at = ["connectwise.clientID", "clientId"]
        .iter()
        .find_map(|k| conf.get(*k).map(|v| (*k, v)))
        .and_then(|(k, v)| Some((k, cx.required_string(&conf_pointer(k), k, v)?)));
    if client_id_at.is_none()
        && !conf.contains_key("connectwise.clientID")
        && !conf.contains_key("clientId")
    {
        cx.warning(
            "no \"connectwise.clientID\": ConnectWise rejects API requests without a clientId; \
             register one at developer.connectwise.com and add it to configuration",
        );
    }
    let (company, public_key, private_key) = (company?, public_key?, private_key?);
    let request_headers = connectwise_headers(
        cx,
        &company,
        &public_key,
        &private_key,
        client_id_at.as_ref().map(|(k, c)| (*k, c.as_str())),
    );
    Some(ElementSpec::ConnectWise(ConnectWiseSpec {
        base_url: base_url?,
        company,
        public_key: Secret::new(public_key),
        private_key: Secret::new(private_key),
        client_id: client_id_at.map(|(_, c)| c),
        request_headers: request_headers?,
    }))
}

/// ConnectWise's `Authorization` and, when configured, `clientId`; `client_id` is the key it was
/// given under (for the error's position) and its value.
fn connectwise_headers(
    cx: &mut Ctx,
    company: &str,
    public_key: &str,
    private_key: &str,
    client_id: Option<(&str, &str)>,
) -> Option<RequestHeaders> {
    let authorization = basic_authorization(&format!("{company}+{public_key}"), private_key);
    let client_id = match client_id {
        Some((key, value)) => Some(
            headers::sensitive_value(value, key)
                .map_err(|e| cx.error(&conf_pointer(key), e.to_string()))
                .ok()?,
        ),
        None => None,
    };
    let mut out = vec![(AUTHORIZATION, authorization)];
    out.extend(client_id.map(|v| (CLIENT_ID, v)));
    Some(out)
}

fn http_element(
    cx: &mut Ctx,
    conf: &Map<String, Value>,
    base_url: Option<String>,
) -> Option<ElementSpec> {
    let mut headers = Vec::new();
    let mut request_headers = Some(RequestHeaders::new());
    if let Some(v) = conf.get("headers") {
        let p = conf_pointer("headers");
        if let Some(map) = cx.object(&p, "headers", v) {
            for (name, value) in map {
                let at = child_pointer(&p, name);
                let parsed_name = headers::header_name(name)
                    .map_err(|e| cx.key_error(&at, e.to_string()))
                    .ok();
                let Some(value) = cx.string(&at, "a header value", value) else {
                    request_headers = None;
                    continue;
                };
                let parsed_value = headers::sensitive_value(&value, &format!("header {name:?}"))
                    .map_err(|e| cx.error(&at, e.to_string()))
                    .ok();
                match (parsed_name, parsed_value, request_headers.as_mut()) {
                    (Some(n), Some(v), Some(all)) => all.push((n, v)),
                    _ => request_headers = None,
                }
                headers.push((name.clone(), Secret::new(value)));
            }
        }
    }
    let auth = match conf.get("auth") {
        None => None,
        Some(v) => Some(http_auth(cx, v)?),
    };
    if let Some(auth) = &auth {
        let authorization = auth_header(auth)
            .map_err(|e| cx.error(&auth_value_pointer(auth), e.to_string()))
            .ok();
        match (authorization, request_headers.as_mut()) {
            (Some(v), Some(all)) => all.push((AUTHORIZATION, v)),
            _ => request_headers = None,
        }
    }
    Some(ElementSpec::Http(HttpSpec {
        base_url: base_url?,
        headers,
        auth,
        request_headers: request_headers?,
    }))
}

/// The `Authorization` value `auth` sends.
fn auth_header(auth: &HttpAuth) -> Result<HeaderValue, headers::HeaderError> {
    match auth {
        HttpAuth::Basic { user, password } => Ok(basic_authorization(user, password.expose())),
        HttpAuth::Bearer { token } => headers::bearer_authorization(token.expose()),
    }
}

/// Where the value an `Authorization` is made of stands (for its error).
fn auth_value_pointer(auth: &HttpAuth) -> String {
    let field = match auth {
        HttpAuth::Basic { .. } => "password",
        HttpAuth::Bearer { .. } => "token",
    };
    child_pointer(&conf_pointer("auth"), field)
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

/// An absolute http(s) URL with a host, as written.
pub(super) fn check_url(cx: &mut Ctx, pointer: &str, name: &str, url: &str) -> Option<String> {
    checked_url(cx, pointer, name, url).map(|_| url.to_string())
}

/// An absolute http(s) URL with a host, parsed.
pub(super) fn checked_url(
    cx: &mut Ctx,
    pointer: &str,
    name: &str,
    url: &str,
) -> Option<reqwest::Url> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Some(u),
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
