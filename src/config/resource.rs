//! The resources of an instance: `event.poller.configuration` (object or JSON string) and the
//! legacy `event.poller.urls` list.

use std::time::Duration;

use serde_json::{Map, Value};

use super::fields::Ctx;
use super::source::child_pointer;
use super::spec::{DateField, ElementKind, FieldPath, Paging, ResourceSpec};
use crate::dates::{DatePattern, Zone};
use crate::hubs::{CONNECTWISE_OBJECTS, CreatedDate, NativeRequest};
use crate::template::UrlTemplate;

const RESOURCE_KEYS: &[&str] = &[
    "url",
    "idField",
    "datesConfiguration",
    "pageSize",
    "pollDelay",
    "createdCheckTolerance",
    "filterByUpdatedDate",
    "filterByUpdateDate",
    "filterByCurrentDate",
    "updatedDateTimezone",
    "paging",
    "backfillSince",
    "itemsPath",
    "nextPageField",
    "nextPageParam",
    "pageParam",
    "deletedCheckInterval",
    "deletedMaxFraction",
    "idsUrl",
];
const DATES_KEYS: &[&str] = &[
    "updatedDateField",
    "updatedDateFormat",
    "updatedDateTimezone",
    "createdDateField",
    "createdDateFormat",
    "createdDateTimezone",
];

const POLLER_CONF: &str = "/configuration/event.poller.configuration";
const POLLER_URLS: &str = "/configuration/event.poller.urls";

/// All resources of the instance; `None` when any had errors (they are reported).
pub fn resources(
    cx: &mut Ctx,
    conf: &Map<String, Value>,
    kind: ElementKind,
) -> Option<Vec<ResourceSpec>> {
    let legacy = match conf.get("event.poller.urls") {
        Some(v) => Some(legacy_urls(cx, v)?),
        None => None,
    };
    let mut out = Vec::new();
    let mut ok = true;
    match (conf.get("event.poller.configuration"), legacy) {
        // A string here failed to parse as JSON; that error is already reported.
        (Some(Value::String(_)), _) => return None,
        (Some(v), legacy) => {
            let map = cx.object(POLLER_CONF, "event.poller.configuration", v)?;
            for (name, rv) in map {
                // With JSON configuration present, the legacy list only says which are enabled.
                if legacy
                    .as_ref()
                    .is_some_and(|l| !l.iter().any(|e| &e.resource == name))
                {
                    continue;
                }
                match resource(cx, name, rv, kind) {
                    Some(r) => out.push(r),
                    None => ok = false,
                }
            }
            for entry in legacy.iter().flatten() {
                if !map.contains_key(&entry.resource) {
                    cx.error(
                        POLLER_URLS,
                        format!(
                            "event.poller.urls line {} names resource {:?}, which event.poller.configuration does not define",
                            entry.line, entry.resource
                        ),
                    );
                    ok = false;
                }
            }
        }
        (None, Some(legacy)) => {
            for entry in legacy {
                match legacy_resource(cx, &entry, kind) {
                    Some(r) => out.push(r),
                    None => ok = false,
                }
            }
        }
        (None, None) => {}
    }
    ok.then_some(out)
}

/// One resource's object in `event.poller.configuration`: its JSON pointer, how errors name it,
/// and its keys.
struct ResourceEntry<'a> {
    pointer: String,
    what: String,
    obj: &'a Map<String, Value>,
}

impl ResourceEntry<'_> {
    fn at(&self, key: &str) -> String {
        child_pointer(&self.pointer, key)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key)
    }
}

fn resource(cx: &mut Ctx, name: &str, v: &Value, kind: ElementKind) -> Option<ResourceSpec> {
    let pointer = child_pointer(POLLER_CONF, name);
    let what = format!("resource {name:?}");
    let obj = cx.object(&pointer, &what, v)?;
    cx.reject_unknown(&pointer, &what, obj, RESOURCE_KEYS);
    let e = ResourceEntry { pointer, what, obj };

    let (url, native) = url_and_request(cx, &e, kind);
    let id_field = id_field(cx, &e);
    let (updated, created) = required_dates(cx, &e)?;
    if let (Some(native), Some(id_field)) = (&native, &id_field) {
        let mut read = vec![("idField", id_field), ("updatedDateField", &updated.field)];
        read.extend(created.as_ref().map(|c| ("createdDateField", &c.field)));
        fields_cover(cx, &e.at("url"), native, &read);
    }
    let page_size = page_size(cx, &e, kind)?;
    let poll_delay = seconds(cx, &e, "pollDelay");
    let tolerance = seconds(cx, &e, "createdCheckTolerance");
    let by_updated = filter_by_updated_date(cx, &e);
    let by_current = match e.get("filterByCurrentDate") {
        Some(v) => cx.boolean(&e.at("filterByCurrentDate"), "filterByCurrentDate", v),
        None => Some(false),
    };
    let paging = paging(cx, &e.pointer, e.obj, kind);
    let backfill_since = backfill_since(cx, &e);
    if let (Some(url), Some(c)) = (&url, &created) {
        if c.field == updated.field {
            cx.warning(same_date_fields_warning(name, url.source(), &c.field, kind));
        }
    }
    let items_path = items_path(cx, &e)?;
    let deleted_check = super::deleted::deleted_check(cx, &e.pointer, e.obj, kind);
    Some(ResourceSpec {
        name: name.to_string(),
        url: url?,
        id_field: id_field?,
        updated,
        created,
        page_size,
        poll_delay: poll_delay?,
        created_check_tolerance: tolerance?,
        filter_by_updated_date: by_updated?,
        filter_by_current_date: by_current?,
        paging: paging?,
        backfill_since: backfill_since?,
        items_path,
        deleted_check: deleted_check?,
    })
}

/// The resource's URL template and, for ConnectWise, its translated request; a ConnectWise URL
/// that does not translate counts as no URL.
fn url_and_request(
    cx: &mut Ctx,
    e: &ResourceEntry,
    kind: ElementKind,
) -> (Option<UrlTemplate>, Option<NativeRequest>) {
    let mut url = match e.get("url") {
        Some(v) => cx
            .required_string(&e.at("url"), "url", v)
            .and_then(|u| template(cx, &e.at("url"), &u)),
        None => {
            cx.error(&e.pointer, format!("{} needs a \"url\"", e.what));
            None
        }
    };
    let native = match &url {
        Some(t) if kind == ElementKind::ConnectWise => {
            let native = connectwise_request(cx, &e.at("url"), t);
            if native.is_none() {
                url = None;
            }
            native
        }
        _ => None,
    };
    (url, native)
}

fn id_field(cx: &mut Ctx, e: &ResourceEntry) -> Option<FieldPath> {
    match e.get("idField") {
        Some(v) => cx
            .required_string(&e.at("idField"), "idField", v)
            .and_then(|f| field_path(cx, &e.at("idField"), &f)),
        None => FieldPath::parse("id"),
    }
}

/// `datesConfiguration`, which every resource needs; the resource-level `updatedDateTimezone`
/// is the default zone of the updated date.
fn required_dates(cx: &mut Ctx, e: &ResourceEntry) -> Option<(DateField, Option<DateField>)> {
    let resource_zone = e
        .get("updatedDateTimezone")
        .map(|v| (e.at("updatedDateTimezone"), v));
    match e.get("datesConfiguration") {
        Some(v) => dates_configuration(cx, &e.at("datesConfiguration"), v, resource_zone),
        None => {
            cx.error(
                &e.pointer,
                format!("{} needs \"datesConfiguration\" with at least updatedDateField and updatedDateFormat", e.what),
            );
            None
        }
    }
}

/// `Some(None)` when not given; `None` when given and invalid.
fn page_size(cx: &mut Ctx, e: &ResourceEntry, kind: ElementKind) -> Option<Option<u32>> {
    let max_page = u64::from(kind.max_page_size());
    match e.get("pageSize") {
        Some(v) => Some(Some(
            cx.integer(&e.at("pageSize"), "pageSize", v, 1, max_page)? as u32,
        )),
        None => Some(None),
    }
}

/// A duration in seconds, up to 30 days; zero when not given.
fn seconds(cx: &mut Ctx, e: &ResourceEntry, key: &str) -> Option<Duration> {
    match e.get(key) {
        Some(v) => cx
            .number(&e.at(key), key, v, 0.0, 30.0 * 24.0 * 3600.0)
            .map(Duration::from_secs_f64),
        None => Some(Duration::ZERO),
    }
}

/// `filterByUpdatedDate`, also accepted under its old spelling `filterByUpdateDate`.
fn filter_by_updated_date(cx: &mut Ctx, e: &ResourceEntry) -> Option<bool> {
    match (e.get("filterByUpdatedDate"), e.get("filterByUpdateDate")) {
        (Some(_), Some(_)) => {
            cx.key_error(
                &e.at("filterByUpdateDate"),
                "give filterByUpdatedDate or its old spelling filterByUpdateDate, not both",
            );
            None
        }
        (Some(v), None) => cx.boolean(&e.at("filterByUpdatedDate"), "filterByUpdatedDate", v),
        (None, Some(v)) => cx.boolean(&e.at("filterByUpdateDate"), "filterByUpdateDate", v),
        (None, None) => Some(true),
    }
}

/// `Some(None)` when not given; `None` when given and invalid.
fn backfill_since(
    cx: &mut Ctx,
    e: &ResourceEntry,
) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    match e.get("backfillSince") {
        Some(v) => cx.required_string(&e.at("backfillSince"), "backfillSince", v).and_then(|s| {
            chrono::DateTime::parse_from_rfc3339(&s).map(|d| d.to_utc()).map_err(|err| {
                cx.error(&e.at("backfillSince"), format!("backfillSince must be an RFC 3339 time like 2026-01-02T03:04:05Z: {err}"));
            }).ok()
        }).map(Some),
        None => Some(None),
    }
}

/// `Some(None)` when not given; `None` when given and invalid.
fn items_path(cx: &mut Ctx, e: &ResourceEntry) -> Option<Option<FieldPath>> {
    match e.get("itemsPath") {
        Some(v) => Some(Some(
            cx.required_string(&e.at("itemsPath"), "itemsPath", v)
                .and_then(|f| field_path(cx, &e.at("itemsPath"), &f))?,
        )),
        None => Some(None),
    }
}

/// SPEC §7: with equal created and updated fields every event is CREATED.
fn same_date_fields_warning(
    resource: &str,
    url: &str,
    field: &FieldPath,
    kind: ElementKind,
) -> String {
    let mut msg = format!(
        "resource {resource:?}: createdDateField equals updatedDateField ({field}), so every event will be CREATED"
    );
    if kind == ElementKind::ConnectWise {
        let path = url.split('?').next().unwrap_or(url);
        let named = |created: CreatedDate| {
            CONNECTWISE_OBJECTS
                .iter()
                .any(|o| o.created == created && o.named_in(path))
        };
        if named(CreatedDate::DateEntered) {
            msg.push_str(
                "; ConnectWise has _info.dateEntered for this resource: use it as createdDateField",
            );
        } else if named(CreatedDate::NotRecorded) {
            msg.push_str(" (ConnectWise contacts have only _info.lastUpdated, so CREATED and UPDATED cannot be told apart)");
        }
    }
    msg
}

fn paging(cx: &mut Ctx, p: &str, obj: &Map<String, Value>, kind: ElementKind) -> Option<Paging> {
    let at = |k: &str| child_pointer(p, k);
    let text = |cx: &mut Ctx, k: &str| obj.get(k).and_then(|v| cx.required_string(&at(k), k, v));
    if kind == ElementKind::ConnectWise {
        for k in ["nextPageField", "nextPageParam", "pageParam", "itemsPath"] {
            if obj.contains_key(k) {
                cx.key_error(
                    &at(k),
                    format!(
                        "{k} is for the http element; connectwisecrmrest pages with \"paging\""
                    ),
                );
            }
        }
        return match obj.get("paging") {
            None => Some(kind.default_paging()),
            Some(v) => match cx.string(&at("paging"), "paging", v)?.as_str() {
                "keyset" | "forward-only" => Some(Paging::Keyset),
                "page" => Some(Paging::Page {
                    param: "page".into(),
                }),
                other => {
                    cx.error(
                        &at("paging"),
                        format!("paging must be \"keyset\" (default) or \"page\", not {other:?}"),
                    );
                    None
                }
            },
        };
    }
    if obj.contains_key("paging") {
        cx.key_error(&at("paging"), "\"paging\" is for connectwisecrmrest; the http element uses nextPageField/nextPageParam or pageParam");
    }
    match (
        text(cx, "nextPageField"),
        text(cx, "nextPageParam"),
        text(cx, "pageParam"),
    ) {
        (Some(field), Some(param), None) => Some(Paging::Cursor {
            field: field_path(cx, &at("nextPageField"), &field)?,
            param,
        }),
        (None, None, Some(param)) => Some(Paging::Page { param }),
        (None, None, None) => Some(kind.default_paging()),
        _ => {
            cx.error(p, "give nextPageField with nextPageParam (cursor paging), or pageParam (page paging), or neither (Link headers)");
            None
        }
    }
}

type ZoneAt<'a> = Option<(String, &'a Value)>;

fn dates_configuration(
    cx: &mut Ctx,
    p: &str,
    v: &Value,
    resource_zone: ZoneAt,
) -> Option<(DateField, Option<DateField>)> {
    let obj = cx.object(p, "datesConfiguration", v)?;
    cx.reject_unknown(p, "datesConfiguration", obj, DATES_KEYS);
    let entry = |k: &str| obj.get(k).map(|v| (child_pointer(p, k), v));
    let updated = date_field(
        cx,
        p,
        "updated",
        entry("updatedDateField"),
        entry("updatedDateFormat"),
        entry("updatedDateTimezone").or(resource_zone),
    );
    let created = match entry("createdDateField") {
        None => {
            for k in ["createdDateFormat", "createdDateTimezone"] {
                if obj.contains_key(k) {
                    cx.key_error(
                        &child_pointer(p, k),
                        format!("{k} is given but createdDateField is not"),
                    );
                }
            }
            Some(None)
        }
        field => date_field(
            cx,
            p,
            "created",
            field,
            entry("createdDateFormat"),
            entry("createdDateTimezone"),
        )
        .map(Some),
    };
    Some((updated?, created?))
}

fn date_field(
    cx: &mut Ctx,
    p: &str,
    which: &str,
    field: ZoneAt,
    format: ZoneAt,
    zone: ZoneAt,
) -> Option<DateField> {
    let (Some((fp, fv)), Some((pp, pv))) = (field, format) else {
        cx.error(
            p,
            format!("datesConfiguration needs {which}DateField and {which}DateFormat"),
        );
        return None;
    };
    let field = cx
        .required_string(&fp, "a date field", fv)
        .and_then(|f| field_path(cx, &fp, &f));
    let pattern = cx
        .required_string(&pp, "a date format", pv)
        .and_then(|s| date_pattern(cx, &pp, &s));
    let zone = match zone {
        Some((zp, zv)) => cx
            .required_string(&zp, "a time zone", zv)
            .and_then(|z| time_zone(cx, &zp, &z)),
        None => Some(Zone::utc()),
    };
    Some(DateField {
        field: field?,
        pattern: pattern?,
        zone: zone?,
    })
}

pub fn date_pattern(cx: &mut Ctx, pointer: &str, s: &str) -> Option<DatePattern> {
    DatePattern::compile(s)
        .map_err(|e| cx.error(pointer, format!("invalid date format: {e}")))
        .ok()
}

pub fn time_zone(cx: &mut Ctx, pointer: &str, s: &str) -> Option<Zone> {
    Zone::parse(s)
        .map_err(|e| cx.error(pointer, e.to_string()))
        .ok()
}

fn template(cx: &mut Ctx, pointer: &str, s: &str) -> Option<UrlTemplate> {
    UrlTemplate::parse(s)
        .map_err(|e| cx.error(pointer, format!("invalid url template: {e}")))
        .ok()
}

/// A ConnectWise resource URL must map to an endpoint and its `where` must translate; both are
/// checked now, with any instant, rather than on the first poll.
fn connectwise_request(cx: &mut Ctx, pointer: &str, t: &UrlTemplate) -> Option<NativeRequest> {
    let rendered = t.render(chrono::DateTime::UNIX_EPOCH);
    match crate::hubs::native_request(&rendered) {
        Ok(native) => Some(native),
        Err(e) => {
            // Name the URL as the operator wrote it, not as rendered for the check.
            cx.error(pointer, e.to_string().replace(&rendered, t.source()));
            None
        }
    }
}

/// ConnectWise answers a request with `fields=a,b` with those fields only: a field pollerd reads
/// (`read`: the key naming it, its path) that the list leaves out would be missing from every
/// record, and every record skipped. A list entry covers a path when it is the path or one of
/// its parents, written with `.` or `/` (`_info` and `_info/lastUpdated` cover
/// `_info.lastUpdated`). Reports each field left out.
fn fields_cover(cx: &mut Ctx, pointer: &str, native: &NativeRequest, read: &[(&str, &FieldPath)]) {
    let Some((_, list)) = native
        .query
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("fields"))
    else {
        return;
    };
    let entries: Vec<Vec<&str>> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| e.split(['/', '.']).collect())
        .collect();
    for (key, path) in read {
        let segments: Vec<&str> = path.as_str().split('.').collect();
        if entries.iter().any(|e| segments.starts_with(e)) {
            continue;
        }
        let top = segments.first().copied().unwrap_or_default();
        cx.error(
            pointer,
            format!(
                "fields={list} leaves out {top:?}, needed by {key} {path}: ConnectWise answers \
                 only the fields listed, so every record would be skipped; add {top} to fields"
            ),
        );
    }
}

fn field_path(cx: &mut Ctx, pointer: &str, s: &str) -> Option<FieldPath> {
    let f = FieldPath::parse(s);
    if f.is_none() {
        cx.error(
            pointer,
            format!("invalid field path {s:?}: write dotted names like _info.lastUpdated"),
        );
    }
    f
}

/// One line of `event.poller.urls`: `resource|url|xpath|updField|updFmt|updTz|crField|crFmt|crTz`.
struct LegacyEntry {
    line: usize,
    resource: String,
    fields: Vec<String>,
}

fn legacy_urls(cx: &mut Ctx, v: &Value) -> Option<Vec<LegacyEntry>> {
    let text = cx.string(POLLER_URLS, "event.poller.urls", v)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split('|').map(|f| f.trim().to_string()).collect();
        if fields[0].is_empty() {
            cx.error(
                POLLER_URLS,
                format!(
                    "event.poller.urls line {}: missing resource name before the first |",
                    i + 1
                ),
            );
            return None;
        }
        out.push(LegacyEntry {
            line: i + 1,
            resource: fields[0].clone(),
            fields,
        });
    }
    Some(out)
}

fn legacy_resource(cx: &mut Ctx, e: &LegacyEntry, kind: ElementKind) -> Option<ResourceSpec> {
    let f = |i: usize| {
        e.fields
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let need = |cx: &mut Ctx, i: usize, what: &str| {
        let v = f(i);
        if v.is_none() {
            cx.error(
                POLLER_URLS,
                format!(
                    "event.poller.urls line {} ({}): missing {what}",
                    e.line, e.resource
                ),
            );
        }
        v
    };
    let url = need(cx, 1, "url").and_then(|u| template(cx, POLLER_URLS, u));
    let upd_field = need(cx, 3, "updated date field").and_then(|s| field_path(cx, POLLER_URLS, s));
    let upd_fmt = need(cx, 4, "updated date format").and_then(|s| date_pattern(cx, POLLER_URLS, s));
    let upd_tz = f(5).map_or(Some(Zone::utc()), |z| time_zone(cx, POLLER_URLS, z));
    let created = match f(6) {
        None => Some(None),
        Some(cf) => {
            let field = field_path(cx, POLLER_URLS, cf);
            let fmt =
                need(cx, 7, "created date format").and_then(|s| date_pattern(cx, POLLER_URLS, s));
            let tz = f(8).map_or(Some(Zone::utc()), |z| time_zone(cx, POLLER_URLS, z));
            match (field, fmt, tz) {
                (Some(field), Some(pattern), Some(zone)) => Some(Some(DateField {
                    field,
                    pattern,
                    zone,
                })),
                _ => None,
            }
        }
    };
    // The xpath column (2) named the records inside the body; for http it is the items path.
    let items_path = match kind {
        ElementKind::ConnectWise => None,
        ElementKind::Http => f(2).and_then(FieldPath::parse),
    };
    Some(ResourceSpec {
        name: e.resource.clone(),
        url: url?,
        id_field: FieldPath::parse("id")?,
        updated: DateField {
            field: upd_field?,
            pattern: upd_fmt?,
            zone: upd_tz?,
        },
        created: created?,
        page_size: None,
        poll_delay: Duration::ZERO,
        created_check_tolerance: Duration::ZERO,
        filter_by_updated_date: true,
        filter_by_current_date: false,
        paging: kind.default_paging(),
        backfill_since: None,
        items_path,
        deleted_check: None,
    })
}
