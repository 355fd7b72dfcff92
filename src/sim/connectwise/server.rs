//! The HTTP side of the simulator: one handler that checks faults and auth, routes, pages and
//! logs.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use futures_util::StreamExt;
use serde_json::json;

use super::actions;
use super::conditions::Conditions;
use super::faults::{LOGIN_PAGE, MAINTENANCE_PAGE};
use super::fields::Fields;
use super::records::RecordTable;
use super::{API_PREFIX, Fault, RecordKind, RequestLog, SimState, TenantLoad};

/// The media type ConnectWise labels its JSON with.
pub(super) const JSON_CONTENT_TYPE: &str =
    "application/vnd.connectwise.com+json; version=2022.1; charset=utf-8";
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
const DEFAULT_PAGE_SIZE: u64 = 25;
const MAX_PAGE_SIZE: u64 = 1000;

pub(super) fn router(state: Arc<SimState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// An answer before it becomes an HTTP response (so faults can still reshape it).
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    link: Option<String>,
    /// `Retry-After`, `Location`, a second `Link` line.
    extra_headers: Vec<(header::HeaderName, String)>,
    date_offset_secs: i64,
    endless: bool,
}

impl Answer {
    fn json(status: StatusCode, body: Vec<u8>) -> Answer {
        Answer {
            status,
            content_type: JSON_CONTENT_TYPE,
            body,
            link: None,
            extra_headers: Vec::new(),
            date_offset_secs: 0,
            endless: false,
        }
    }

    fn html(status: StatusCode, page: &str) -> Answer {
        Answer {
            status,
            content_type: HTML_CONTENT_TYPE,
            body: page.as_bytes().to_vec(),
            link: None,
            extra_headers: Vec::new(),
            date_offset_secs: 0,
            endless: false,
        }
    }

    /// ConnectWise's error body: `{"code": …, "message": …, "errors": …}`.
    fn error(status: StatusCode, code: &str, message: &str) -> Answer {
        let body = json!({ "code": code, "message": message, "errors": null });
        Answer::json(status, body.to_string().into_bytes())
    }

    fn bad_request(message: &str) -> Answer {
        let body = json!({
            "code": "InvalidObject",
            "message": message,
            "errors": [{ "code": "InvalidObject", "message": message, "resource": "request" }],
        });
        Answer::json(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
    }

    fn unauthorized(message: &str) -> Answer {
        Answer::error(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    fn not_found(message: &str) -> Answer {
        Answer::error(StatusCode::NOT_FOUND, "NotFound", message)
    }
}

/// What a request asked, as far as the handler and the log care.
struct Asked {
    method: Method,
    path: String,
    raw_query: String,
    params: Vec<(String, String)>,
    had_valid_auth: bool,
    company: Option<String>,
    client_id: Option<String>,
    pagination_type: Option<String>,
}

impl Asked {
    /// A query parameter, by case-insensitive name (as ConnectWise reads them).
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn number_param(&self, name: &str) -> Result<Option<u64>, Answer> {
        match self.param(name) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                Answer::bad_request(&format!("{name} must be a whole number, not '{text}'"))
            }),
        }
    }

    fn forward_only(&self) -> bool {
        self.pagination_type
            .as_deref()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("forward-only"))
    }
}

async fn handle(State(state): State<Arc<SimState>>, request: Request) -> Response {
    // Served in its own task: a client that gives up (a timeout during an injected latency)
    // drops this future, and the request must still be answered into the void and logged, so
    // that the log holds every request that arrived.
    match tokio::spawn(serve(state, request)).await {
        Ok(response) => response,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Counts a request in [`SimState::in_flight`] while it is being answered, cancelled or not.
struct InFlight<'a>(&'a SimState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a SimState) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a request in its company's [`TenantLoad`] while it is being answered.
struct TenantInFlight<'a> {
    state: &'a SimState,
    company: Option<String>,
}

impl<'a> TenantInFlight<'a> {
    fn enter(state: &'a SimState, company: Option<String>) -> Self {
        if let Some(company) = &company {
            let mut loads = state.tenant_load.lock().expect("tenant load lock");
            // The name is copied once per company, not once per request (benchmarks run many).
            if !loads.contains_key(company) {
                loads.insert(company.clone(), TenantLoad::default());
            }
            if let Some(load) = loads.get_mut(company) {
                load.in_flight += 1;
                load.peak = load.peak.max(load.in_flight);
            }
        }
        TenantInFlight { state, company }
    }
}

impl Drop for TenantInFlight<'_> {
    fn drop(&mut self) {
        let Some(company) = &self.company else {
            return;
        };
        let mut load = self.state.tenant_load.lock().expect("tenant load lock");
        if let Some(load) = load.get_mut(company) {
            load.in_flight = load.in_flight.saturating_sub(1);
        }
    }
}

async fn serve(state: Arc<SimState>, request: Request) -> Response {
    let _in_flight = InFlight::enter(&state);
    let (parts, _body) = request.into_parts();
    let company = tenant_of(&state, &parts.headers);
    let _tenant_in_flight = TenantInFlight::enter(&state, company.clone());
    let asked = Asked {
        had_valid_auth: company.is_some(),
        company,
        client_id: header_text(&parts.headers, "clientid"),
        pagination_type: header_text(&parts.headers, "pagination-type"),
        params: decode_query(&parts.uri),
        method: parts.method,
        path: parts.uri.path().to_string(),
        raw_query: parts.uri.query().unwrap_or("").to_string(),
    };
    let received_at = state.now();
    let route = asked.path.strip_prefix(API_PREFIX).map(route);
    let listed_faults = match route {
        Some(Route::List(kind)) => run_list_actions(&state, &asked, kind),
        _ => Vec::new(),
    };
    let mut plan = state.faults.lock().expect("faults lock").plan(&asked.path);
    for fault in listed_faults {
        plan.add(fault);
    }
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let mut answer = fault_or_normal_answer(&state, &asked, plan.answer.as_ref());
    reshape(&mut answer, plan.answer.as_ref(), &state.base_url);
    if plan.answer == Some(Fault::TruncatedJson) {
        let half = (answer.body.len() / 2).max(1);
        answer.body.truncate(half);
    }

    // An endless body is not counted: it has no length.
    let body_bytes = if answer.endless { 0 } else { answer.body.len() };
    if let Some(kind) = route.and_then(Route::kind) {
        state.served[kind.index()].add(body_bytes);
    }
    let now = state.now();
    state.record_request(RequestLog {
        at: now,
        received_at,
        delayed: plan.latency,
        method: asked.method.to_string(),
        path: asked.path.clone(),
        query: asked.raw_query.clone(),
        status: answer.status.as_u16(),
        had_valid_auth: asked.had_valid_auth,
        company: asked.company.clone(),
        client_id: asked.client_id.clone(),
        pagination_type: asked.pagination_type.clone(),
        conditions: asked.param("conditions").map(str::to_string),
        fields: asked.param("fields").map(str::to_string),
        page: asked.number_param("page").ok().flatten(),
        page_id: asked.number_param("pageId").ok().flatten(),
        page_size: asked.number_param("pageSize").ok().flatten(),
        fault: plan.answer.as_ref().map(|fault| format!("{fault:?}")),
        body_bytes,
    });
    into_response(answer, now)
}

/// Runs the test actions due before this request to the list endpoint of `kind`; returns the
/// faults due on it.
fn run_list_actions(state: &Arc<SimState>, asked: &Asked, kind: RecordKind) -> Vec<Fault> {
    if asked.method != Method::GET {
        return Vec::new();
    }
    let query: Vec<String> = asked
        .params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    actions::run_due(state, kind, &query.join("&"))
}

/// The answer a fault makes, or the normal answer where the fault only reshapes it.
fn fault_or_normal_answer(state: &SimState, asked: &Asked, fault: Option<&Fault>) -> Answer {
    match fault {
        Some(Fault::ServerError) => Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UnexpectedServerError",
            "An unexpected server error has occurred",
        ),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut answer = Answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                &format!("Too many requests; retry after {retry_after_secs} seconds"),
            );
            answer
                .extra_headers
                .push((header::RETRY_AFTER, retry_after_secs.to_string()));
            answer
        }
        Some(Fault::RetryAfterText(text)) => {
            let mut answer = Answer::error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Slow down",
            );
            answer
                .extra_headers
                .push((header::RETRY_AFTER, text.clone()));
            answer
        }
        Some(Fault::Redirect(location)) => {
            let mut answer = Answer::error(StatusCode::FOUND, "Moved", "Moved");
            answer
                .extra_headers
                .push((header::LOCATION, location.clone()));
            answer
        }
        Some(Fault::EndlessBody) => {
            let mut answer = Answer::json(StatusCode::OK, Vec::new());
            answer.endless = true;
            answer
        }
        Some(Fault::HostileErrorText) => {
            let message = format!("\x1b[2J\x1b[31mdisk on fire\r\n{}", "x".repeat(50_000));
            Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "Boom", &message)
        }
        Some(Fault::HtmlMaintenance) => {
            Answer::html(StatusCode::SERVICE_UNAVAILABLE, MAINTENANCE_PAGE)
        }
        Some(Fault::HtmlOk) => Answer::html(StatusCode::OK, LOGIN_PAGE),
        Some(Fault::Unauthorized) => Answer::unauthorized("Authentication failed"),
        Some(
            Fault::TruncatedJson
            | Fault::Latency(_)
            | Fault::LinkOrigin(_)
            | Fault::AwkwardLink
            | Fault::UnreadableLink
            | Fault::LastRecordWithoutId
            | Fault::DateOffset(_),
        )
        | None => answer(state, asked).unwrap_or_else(|error| error),
    }
}

/// What the faults that keep the normal answer change in it.
fn reshape(answer: &mut Answer, fault: Option<&Fault>, base_url: &str) {
    let origin = base_url.strip_suffix(API_PREFIX).unwrap_or(base_url);
    match fault {
        Some(Fault::LinkOrigin(elsewhere)) => {
            answer.link = answer.link.take().map(|l| l.replace(origin, elsewhere));
        }
        Some(Fault::AwkwardLink) => {
            if let Some(link) = answer.link.take() {
                // `<http://host:port/v4_6_release/apis/3.0/…>` → `</v4_6_release/apis/3.0/…>`.
                // Targets get `via=link`, so a test can tell pages read from a Link.
                let relative = link.replace(origin, "").replace(">;", "&via=link>;");
                let next = relative.replace(r#"rel="next""#, r#"title="a, b"; rel="last next""#);
                answer.link = Some(format!("<{base_url}/system/info>; rel=first"));
                answer.extra_headers.push((header::LINK, next));
            }
        }
        Some(Fault::UnreadableLink) => {
            answer.link = answer.link.take().map(|l| l.replacen('>', "", 1));
        }
        Some(Fault::LastRecordWithoutId) => drop_last_id(answer),
        Some(Fault::DateOffset(secs)) => answer.date_offset_secs = *secs,
        _ => {}
    }
}

/// Renames the last record's `"id"` key, so the record has no id.
fn drop_last_id(answer: &mut Answer) {
    let Ok(mut records) = serde_json::from_slice::<Vec<serde_json::Value>>(&answer.body) else {
        return;
    };
    if let Some(last) = records.last_mut().and_then(|r| r.as_object_mut())
        && let Some(id) = last.remove("id")
    {
        last.insert("identifier_was".into(), id);
    }
    answer.body = serde_json::to_vec(&records).unwrap_or_default();
}

fn into_response(answer: Answer, now: chrono::DateTime<chrono::Utc>) -> Response {
    let date = now
        .checked_add_signed(chrono::TimeDelta::seconds(answer.date_offset_secs))
        .unwrap_or(now);
    let mut builder = Response::builder()
        .status(answer.status)
        .header(header::CONTENT_TYPE, answer.content_type)
        // RFC 7231 IMF-fixdate, from the simulator's clock so that skew is visible.
        .header(
            header::DATE,
            date.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    if let Some(link) = answer.link {
        builder = builder.header(header::LINK, link);
    }
    for (name, value) in answer.extra_headers {
        builder = builder.header(name, value);
    }
    let body = if answer.endless {
        Body::from_stream(endless_array())
    } else {
        Body::from(answer.body)
    };
    builder.body(body).expect("response headers are valid")
}

/// `[` and then records for ever, 64 KiB at a time.
fn endless_array()
-> impl futures_util::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    let chunk = bytes::Bytes::from(r#"{"id":1,"name":"again"},"#.repeat(2730));
    let open = futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"[")) });
    open.chain(futures_util::stream::repeat_with(move || Ok(chunk.clone())))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The company of valid Basic credentials (`{company}+{public}:{private}`, a company served).
fn tenant_of(state: &SimState, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (company, keys) = decoded.split_once('+')?;
    let config = &state.config;
    let keys_ok = keys.split_once(':') == Some((&config.public_key, &config.private_key));
    let served = state
        .companies
        .read()
        .expect("companies lock")
        .contains(company);
    (keys_ok && served).then(|| company.to_string())
}

/// Decoded query pairs (`+` is a space, as in forms); a query that does not decode counts as empty.
fn decode_query(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|query| query.0)
        .unwrap_or_default()
}

/// What a path under [`API_PREFIX`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    SystemInfo,
    List(RecordKind),
    Count(RecordKind),
    One(RecordKind, u64),
    Unknown,
}

impl Route {
    /// The kind of records the endpoint serves.
    fn kind(self) -> Option<RecordKind> {
        match self {
            Route::List(kind) | Route::Count(kind) | Route::One(kind, _) => Some(kind),
            Route::SystemInfo | Route::Unknown => None,
        }
    }
}

/// Routes `endpoint`, the path after [`API_PREFIX`].
fn route(endpoint: &str) -> Route {
    if endpoint.eq_ignore_ascii_case("/system/info") {
        return Route::SystemInfo;
    }
    for kind in RecordKind::ALL {
        let Some(rest) = endpoint.strip_prefix(kind.path()) else {
            continue;
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Route::List(kind);
        }
        // `/company/contactsX` is not this endpoint.
        let Some(tail) = rest.strip_prefix('/') else {
            continue;
        };
        if tail.eq_ignore_ascii_case("count") {
            return Route::Count(kind);
        }
        return match tail.parse::<u64>() {
            Ok(id) => Route::One(kind, id),
            Err(_) => Route::Unknown,
        };
    }
    Route::Unknown
}

fn method_not_allowed(message: &str) -> Answer {
    Answer::error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
}

/// The normal answer to a request: auth, routing, the endpoint.
fn answer(state: &SimState, asked: &Asked) -> Result<Answer, Answer> {
    if asked.method != Method::GET && asked.method != Method::DELETE {
        return Ok(method_not_allowed(
            "The simulator serves GET, and DELETE of one record",
        ));
    }
    let Some(endpoint) = asked.path.strip_prefix(API_PREFIX) else {
        return Ok(Answer::not_found(&format!(
            "No API at {}; it lives under {API_PREFIX}",
            asked.path
        )));
    };
    if !asked.had_valid_auth {
        return Ok(Answer::unauthorized(
            "Authentication failed: the Basic credentials must be company+publicKey:privateKey",
        ));
    }
    if asked.client_id.as_deref() != Some(state.config.client_id.as_str()) {
        return Ok(Answer::unauthorized(match asked.client_id {
            None => "A clientId header is required",
            Some(_) => "The clientId is not registered",
        }));
    }
    let route = route(endpoint);
    if asked.method == Method::DELETE {
        return Ok(match route {
            Route::One(kind, id) => delete_one(state, kind, id),
            Route::Unknown => Answer::not_found(&format!("No endpoint at {endpoint}")),
            _ => method_not_allowed("Only one record can be deleted: DELETE …/{id}"),
        });
    }
    match route {
        Route::SystemInfo => {
            let info =
                json!({ "version": "v2022.1.87412", "isCloud": true, "serverTimeZone": "UTC" });
            Ok(Answer::json(StatusCode::OK, info.to_string().into_bytes()))
        }
        Route::List(kind) => list(state, asked, kind),
        Route::Count(kind) => count(state, asked, kind),
        Route::One(kind, id) => one(state, asked, kind, id),
        Route::Unknown => Ok(Answer::not_found(&format!("No endpoint at {endpoint}"))),
    }
}

/// `DELETE …/{id}`: 204 with no body, as ConnectWise answers; 404 when there is no such record.
fn delete_one(state: &SimState, kind: RecordKind, id: u64) -> Answer {
    let removed = state.tables.write().expect("records lock")[kind.index()]
        .records
        .remove(&id)
        .is_some();
    if removed {
        Answer::json(StatusCode::NO_CONTENT, Vec::new())
    } else {
        Answer::not_found(&format!("{} with id {id} not found", kind.plural()))
    }
}

fn parse_conditions(asked: &Asked, kind: RecordKind) -> Result<Option<Conditions>, Answer> {
    match asked.param("conditions") {
        Some(text) if !text.trim().is_empty() => Conditions::parse(text, kind)
            .map(Some)
            .map_err(|message| Answer::bad_request(&format!("conditions: {message}"))),
        _ => Ok(None),
    }
}

fn parse_fields(asked: &Asked) -> Result<Option<Fields>, Answer> {
    match asked.param("fields") {
        Some(text) => Fields::parse(text)
            .map_err(|message| Answer::bad_request(&format!("fields: {message}"))),
        None => Ok(None),
    }
}

fn one(state: &SimState, asked: &Asked, kind: RecordKind, id: u64) -> Result<Answer, Answer> {
    let fields = parse_fields(asked)?;
    let tables = state.tables.read().expect("records lock");
    Ok(match tables[kind.index()].records.get(&id) {
        Some(record) => {
            let body = match &fields {
                Some(fields) => fields.project(id, &record.json),
                None => record.json.to_vec(),
            };
            Answer::json(StatusCode::OK, body)
        }
        None => Answer::not_found(&format!("{} with id {id} not found", kind.plural())),
    })
}

fn count(state: &SimState, asked: &Asked, kind: RecordKind) -> Result<Answer, Answer> {
    let conditions = parse_conditions(asked, kind)?;
    let tables = state.tables.read().expect("records lock");
    let total = tables[kind.index()]
        .records
        .iter()
        .filter(|(id, record)| conditions.as_ref().is_none_or(|c| c.matches(**id, record)))
        .count();
    Ok(Answer::json(
        StatusCode::OK,
        json!({ "count": total }).to_string().into_bytes(),
    ))
}

fn list(state: &SimState, asked: &Asked, kind: RecordKind) -> Result<Answer, Answer> {
    let conditions = parse_conditions(asked, kind)?;
    let fields = parse_fields(asked)?;
    let page_size = asked
        .number_param("pageSize")?
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let tables = state.tables.read().expect("records lock");
    let table = &tables[kind.index()];
    let mut page = Page::new(page_size, fields.as_ref());
    let link = if asked.forward_only() {
        let after = asked.number_param("pageId")?.unwrap_or(0);
        forward_only_page(table, conditions.as_ref(), after, &mut page);
        // Like ConnectWise, a full page always offers a next one, which may come back empty.
        (page.count == page_size).then(|| {
            let last_id = page.last_id.expect("a full page has a last id");
            format!(
                "<{}>; rel=\"next\"",
                link_url(state, asked, "pageId", last_id)
            )
        })
    } else {
        let number = asked.number_param("page")?.unwrap_or(1);
        if number == 0 {
            return Err(Answer::bad_request("page must be 1 or more"));
        }
        let total = numbered_page(table, conditions.as_ref(), number, &mut page);
        page_links(state, asked, number, page_size, total)
    };
    page.body.push(b']');
    let mut answer = Answer::json(StatusCode::OK, page.body);
    answer.link = link;
    Ok(answer)
}

/// A JSON array being assembled from pre-serialised records, cut down to `fields` if asked.
struct Page<'a> {
    size: u64,
    count: u64,
    last_id: Option<u64>,
    fields: Option<&'a Fields>,
    body: Vec<u8>,
}

impl<'a> Page<'a> {
    fn new(size: u64, fields: Option<&'a Fields>) -> Page<'a> {
        // Whole records are about 1 KB; reserving avoids regrowing for full pages.
        let record_size = fields.map_or(1100, Fields::record_size_hint);
        let body = Vec::with_capacity(2 + size as usize * record_size);
        let mut page = Page {
            size,
            count: 0,
            last_id: None,
            fields,
            body,
        };
        page.body.push(b'[');
        page
    }

    fn push(&mut self, id: u64, json: &[u8]) {
        if self.count > 0 {
            self.body.push(b',');
        }
        match self.fields {
            Some(fields) => self.body.extend(fields.project(id, json)),
            None => self.body.extend_from_slice(json),
        }
        self.count += 1;
        self.last_id = Some(id);
    }

    fn is_full(&self) -> bool {
        self.count == self.size
    }
}

fn forward_only_page(
    table: &RecordTable,
    conditions: Option<&Conditions>,
    after: u64,
    page: &mut Page<'_>,
) {
    let matching = table
        .records
        .range((Bound::Excluded(after), Bound::Unbounded))
        .filter(|(id, record)| conditions.is_none_or(|c| c.matches(**id, record)));
    for (id, record) in matching {
        page.push(*id, &record.json);
        if page.is_full() {
            break;
        }
    }
}

/// Fills page `number` (1-based); returns how many records match in all.
fn numbered_page(
    table: &RecordTable,
    conditions: Option<&Conditions>,
    number: u64,
    page: &mut Page<'_>,
) -> u64 {
    let first = (number - 1).saturating_mul(page.size);
    let mut total = 0;
    for (id, record) in &table.records {
        if conditions.is_some_and(|c| !c.matches(*id, record)) {
            continue;
        }
        if total >= first && !page.is_full() {
            page.push(*id, &record.json);
        }
        total += 1;
    }
    total
}

/// `Link` header of page paging: first/prev on later pages, next/last while more remain.
fn page_links(
    state: &SimState,
    asked: &Asked,
    number: u64,
    size: u64,
    total: u64,
) -> Option<String> {
    let last = total.div_ceil(size).max(1);
    let mut links = Vec::new();
    if number > 1 {
        links.push(format!(
            "<{}>; rel=\"first\"",
            link_url(state, asked, "page", 1)
        ));
        links.push(format!(
            "<{}>; rel=\"prev\"",
            link_url(state, asked, "page", number - 1)
        ));
    }
    if number < last {
        links.push(format!(
            "<{}>; rel=\"next\"",
            link_url(state, asked, "page", number + 1)
        ));
        links.push(format!(
            "<{}>; rel=\"last\"",
            link_url(state, asked, "page", last)
        ));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

/// The request's URL with `param` set to `value`, other parameters kept as they were sent.
fn link_url(state: &SimState, asked: &Asked, param: &str, value: u64) -> String {
    let origin = state
        .base_url
        .strip_suffix(API_PREFIX)
        .unwrap_or(&state.base_url);
    let mut pairs: Vec<String> = Vec::new();
    let mut replaced = false;
    for pair in asked.raw_query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if name.eq_ignore_ascii_case(param) {
            if !replaced {
                pairs.push(format!("{param}={value}"));
                replaced = true;
            }
        } else {
            pairs.push(pair.to_string());
        }
    }
    if !replaced {
        pairs.push(format!("{param}={value}"));
    }
    format!("{origin}{}?{}", asked.path, pairs.join("&"))
}
