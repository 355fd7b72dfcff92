//! `pollerd status` and `pollerd dead-letters …`: ask the running daemon over its admin socket
//! and print the answer for a person (or as JSON).

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::admin::{
    self, CorruptView, DeadLetterView, Health, InstanceStatus, ResourceStatusView, StatusReport,
};

/// Tables are laid out to fit a terminal this wide.
const SCREEN_WIDTH: usize = 120;
/// The last-error column never gets narrower than this, even if the row then wraps.
const MIN_ERROR_WIDTH: usize = 24;
/// Name columns are cut beyond these widths so the error column keeps some room.
const MAX_INSTANCE_WIDTH: usize = 24;
const MAX_RESOURCE_WIDTH: usize = 18;
const COLUMN_GAP: &str = "  ";

/// What `pollerd dead-letters` was asked to do; `None` ids mean every dead letter (`--all`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetterAction {
    List,
    Replay(Option<Vec<String>>),
    Drop(Option<Vec<String>>),
}

/// Which rows `pollerd status` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusSelection {
    /// Every selected row, however many (otherwise the worst [`SUMMARY_ROWS`]).
    pub all: bool,
    /// Only this instance's resources.
    pub instance: Option<String>,
    /// Only resources that are failing or backlogged.
    pub failing: bool,
}

/// Rows listed without `--all`: with the lines around them, one screen.
pub const SUMMARY_ROWS: usize = 10;

/// Exit status of `pollerd status` when a resource is failing or backlogged.
const UNHEALTHY: u8 = 2;

/// `pollerd status [--json] [--all] [--instance NAME] [--failing]`: 0 when every resource (of
/// `--instance`, when given) is healthy, 2 when any is failing or backlogged, 1 if the daemon is
/// not reachable. `--json` prints the whole report whatever the selection.
pub fn status(socket: &Path, json: bool, selection: &StatusSelection) -> ExitCode {
    let report = match block_on(admin::get_status(socket)) {
        Ok(report) => report,
        Err(error) => return fail(&error),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => return fail(&anyhow::Error::new(error).context("cannot print status")),
        }
    } else {
        print!("{}", render_status_of(&report, selection));
    }
    match HealthCounts::of(&report, selection).unhealthy() {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(UNHEALTHY),
    }
}

/// `pollerd dead-letters list|replay|drop`: 0, or 1 on any error.
pub fn dead_letters(socket: &Path, action: DeadLetterAction) -> ExitCode {
    let outcome = block_on(async {
        match action {
            DeadLetterAction::List => admin::list_dead_letters(socket)
                .await
                .map(|list| render_dead_letters(&list)),
            DeadLetterAction::Replay(ids) => admin::replay_dead_letters(socket, ids)
                .await
                .map(|count| format!("replayed {}\n", plural(count as u64, "dead letter"))),
            DeadLetterAction::Drop(ids) => admin::drop_dead_letters(socket, ids)
                .await
                .map(|count| format!("dropped {}\n", plural(count as u64, "dead letter"))),
        }
    });
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// `pollerd reconcile …`: 0 when every resource reconciled, 1 when any failed or was refused by
/// the mass-delete guard.
pub fn reconcile(socket: &Path, command: &admin::ReconcileCommand, json: bool) -> ExitCode {
    let views = match block_on(admin::reconcile(socket, command)) {
        Ok(views) => views,
        Err(error) => return fail(&error),
    };
    if json {
        match serde_json::to_string_pretty(&views) {
            Ok(text) => println!("{text}"),
            Err(error) => return fail(&anyhow::Error::new(error).context("cannot print")),
        }
    } else {
        for view in &views {
            println!("{}", render_reconcile(&command.instance, view));
        }
    }
    match views.iter().all(|v| v.error.is_none()) {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// One line per resource: what the reconcile did (or would do), with the ids.
pub fn render_reconcile(instance: &str, view: &admin::ReconcileView) -> String {
    let what = format!("{instance}/{}", view.resource);
    let counts = format!("{} known, {} seen", view.known, view.seen);
    let ids = view.deleted.join(" ");
    match view.outcome.as_str() {
        "baseline" if view.dry_run => {
            format!("{what}: first reconcile ({counts}): nothing would be reported")
        }
        "baseline" => format!(
            "{what}: first reconcile: {} records now known, nothing reported",
            view.seen
        ),
        "deleted" if view.dry_run => format!(
            "{what}: dry run: would report {} as deleted ({counts}){}{ids}",
            plural(view.deleted.len() as u64, "record"),
            if ids.is_empty() { "" } else { ": " }
        ),
        "deleted" => format!(
            "{what}: reported {} as deleted ({counts}){}{ids}",
            plural(view.deleted.len() as u64, "record"),
            if ids.is_empty() { "" } else { ": " }
        ),
        _ => format!("{what}: {}", view.error.as_deref().unwrap_or("failed")),
    }
}

/// A small runtime of its own: the CLI does one request and exits.
fn block_on<T>(request: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow::Error::new(error).context("cannot start the async runtime"))?;
    runtime.block_on(request)
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

const STATUS_HEADERS: [&str; 9] = [
    "INSTANCE",
    "RESOURCE",
    "WATERMARK",
    "LAST POLL",
    "NEXT POLL",
    "EVENTS",
    "OUTBOX",
    "DEAD",
    "HEALTH / LAST ERROR",
];

/// The columns of the worst rows when not every row is listed.
const WORST_HEADERS: [&str; 6] = [
    "INSTANCE",
    "RESOURCE",
    "HEALTH",
    "OUTBOX",
    "DEAD",
    "LAST ERROR",
];

/// Notes listed without `--all` (each may take a few lines).
const SUMMARY_NOTES: usize = 5;

/// The status as `pollerd status` prints it by default: every row when they fit one screen,
/// else the worst [`SUMMARY_ROWS`].
pub fn render_status(report: &StatusReport) -> String {
    render_status_of(report, &StatusSelection::default())
}

/// The status: the daemon's lines, the health counts, a table of the selected rows (the worst
/// first when they do not all fit and `--all` was not given), notes and totals. Fits 120
/// columns.
pub fn render_status_of(report: &StatusReport, selection: &StatusSelection) -> String {
    let mut out = String::new();
    write_daemon_lines(&mut out, report);
    write_health_counts(&mut out, &HealthCounts::of(report, selection));
    out.push('\n');
    let table = StatusTable::of(report, selection);
    let shown = match selection.all {
        true => table.rows.len(),
        false => table.rows.len().min(SUMMARY_ROWS),
    };
    if table.rows.is_empty() {
        out.push_str(match selection.instance.is_some() || selection.failing {
            true => "no resource matches\n",
            false => "no resources are being polled\n",
        });
    } else {
        // The worst of many: fewer columns, so that the health word is never cut.
        let worst_only = shown < table.rows.len();
        let rows: Vec<Vec<String>> = table.rows[..shown]
            .iter()
            .map(|row| match worst_only {
                true => row.worst.clone(),
                false => row.full.clone(),
            })
            .collect();
        let truncated = match worst_only {
            true => write_table(&mut out, &WORST_HEADERS, &rows, &[3, 4]),
            false => write_table(&mut out, &STATUS_HEADERS, &rows, &[5, 6, 7]),
        };
        if truncated {
            out.push_str("(errors cut to fit; `pollerd status --json` shows them whole)\n");
        }
    }
    if shown < table.rows.len() {
        let _ = writeln!(
            out,
            "… and {} more {}, none worse than those above (`pollerd status --all` lists every one)",
            table.rows.len() - shown,
            match table.rows.len() - shown {
                1 => "resource",
                _ => "resources",
            }
        );
    }
    let notes = match selection.all {
        true => table.notes.len(),
        false => table.notes.len().min(SUMMARY_NOTES),
    };
    for note in &table.notes[..notes] {
        out.push_str(&wrap(note, "note: ", "      "));
    }
    if notes < table.notes.len() {
        let _ = writeln!(
            out,
            "… and {} more (`--all`)",
            plural((table.notes.len() - notes) as u64, "note")
        );
    }
    write_status_totals(&mut out, report, &table);
    write_dead_letter_summary(&mut out, report);
    write_cluster(&mut out, report);
    out
}

/// On a node sharing a PostgreSQL store: the live nodes, then who holds each instance.
fn write_cluster(out: &mut String, report: &StatusReport) {
    let Some(cluster) = &report.cluster else {
        return;
    };
    out.push('\n');
    if let Some(error) = &cluster.error {
        let _ = writeln!(
            out,
            "node {}; the leases cannot be read: {}",
            cluster.node_id,
            one_line(error)
        );
        return;
    }
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("{} ({})", node.node_id, plural(node.leases, "lease")))
        .collect();
    let line = format!(
        "node {}; {}: {}",
        cluster.node_id,
        plural(cluster.nodes.len() as u64, "live node"),
        nodes.join(", ")
    );
    out.push_str(&wrap(&line, "", "  "));
    let rows: Vec<Vec<String>> = cluster
        .leases
        .iter()
        .map(|lease| {
            vec![
                truncate(&lease.instance, MAX_INSTANCE_WIDTH),
                lease.owner.clone().unwrap_or_else(|| "(free)".to_string()),
                lease.epoch.to_string(),
                short_time(Some(lease.expires_at)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        write_table(out, &["INSTANCE", "OWNER", "EPOCH", "EXPIRES"], &rows, &[2]);
    }
}

/// Resources by health word, of the instances selected (`--instance`; `--failing` selects
/// rows, not what is counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthCounts {
    pub ok: u64,
    pub failing: u64,
    pub backlog: u64,
    /// Resources of instances with events disabled.
    pub disabled: u64,
}

impl HealthCounts {
    pub fn of(report: &StatusReport, selection: &StatusSelection) -> HealthCounts {
        let mut counts = HealthCounts::default();
        let selected = |name: &str| selection.instance.as_deref().is_none_or(|w| w == name);
        for instance in report.instances.iter().filter(|i| selected(&i.name)) {
            for resource in &instance.resources {
                match resource.health {
                    Health::Ok => counts.ok += 1,
                    Health::Disabled => counts.disabled += 1,
                    Health::Failing { .. } => counts.failing += 1,
                    Health::Backlog { .. } => counts.backlog += 1,
                }
            }
        }
        counts
    }

    pub fn unhealthy(&self) -> u64 {
        self.failing + self.backlog
    }
}

fn write_health_counts(out: &mut String, counts: &HealthCounts) {
    let _ = writeln!(
        out,
        "health: {} ok, {} failing, {} backlogged, {} disabled",
        counts.ok, counts.failing, counts.backlog, counts.disabled,
    );
}

/// How bad a health word is, worst first: failing the longest, then the oldest backlog.
fn severity(health: &Health) -> (u8, Option<DateTime<Utc>>) {
    match health {
        Health::Failing { since } => (0, Some(*since)),
        Health::Backlog { oldest, .. } => (1, *oldest),
        Health::Ok | Health::Disabled => (2, None),
    }
}

/// The last column: what is wrong first (the health word, then the last error), else the last
/// error of a resource still ok, else `ok`. Times as the other columns show them.
fn health_cell(resource: &ResourceStatusView) -> String {
    let word = match &resource.health {
        Health::Ok => None,
        Health::Disabled => Some("disabled".to_string()),
        Health::Failing { since } => Some(format!("failing since {}", short_time_today(*since))),
        Health::Backlog { queued, oldest } => Some(match oldest {
            Some(oldest) => format!("backlog {queued} (oldest {})", short_time_today(*oldest)),
            None => format!("backlog {queued}"),
        }),
    };
    let error = resource.last_error.as_deref().map(one_line);
    joined([word, throttle_text(resource), error]).unwrap_or_else(|| "ok".to_string())
}

/// `throttled, waiting 12 s` while a request of the resource waits (short, to fit the column;
/// a note says for what).
fn throttle_text(resource: &ResourceStatusView) -> Option<String> {
    let throttle = resource.throttled.as_ref()?;
    Some(format!("throttled, waiting {} s", throttle.waiting_seconds))
}

/// The parts present, joined with `; `.
fn joined<const N: usize>(parts: [Option<String>; N]) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Version, pid, start time and the outcome of the last reload with its errors.
fn write_daemon_lines(out: &mut String, report: &StatusReport) {
    let _ = writeln!(
        out,
        "pollerd {}, pid {}, running since {} UTC",
        report.version,
        report.pid,
        report.started_at.format("%Y-%m-%d %H:%M:%S")
    );
    let Some(reload) = &report.last_reload else {
        return;
    };
    let at = reload.at.format("%Y-%m-%d %H:%M:%S");
    if reload.ok {
        let _ = writeln!(out, "last reload {at} UTC: ok");
    } else {
        let _ = writeln!(
            out,
            "last reload {at} UTC: {}",
            plural(reload.errors.len() as u64, "error")
        );
        for error in &reload.errors {
            out.push_str(&wrap(&one_line(error), "  ", "    "));
        }
    }
}

/// The rows of the status table, the notes found while collecting them, and the counts the
/// totals line needs.
#[derive(Default)]
struct StatusTable {
    /// The selected rows, worst first (a stable sort: the report's order among equals).
    rows: Vec<Row>,
    notes: Vec<String>,
    resource_count: u64,
    events_total: u64,
    /// `instance/resource` of the selected resources waiting for their tenant's budget.
    throttled: Vec<String>,
}

impl StatusTable {
    fn of(report: &StatusReport, selection: &StatusSelection) -> Self {
        let mut table = Self::default();
        for instance in &report.instances {
            if selection
                .instance
                .as_deref()
                .is_some_and(|wanted| wanted != instance.name)
            {
                continue;
            }
            table.note_instance(instance);
            for resource in &instance.resources {
                if selection.failing && !resource.health.is_unhealthy() {
                    continue;
                }
                table.add_resource(instance, resource);
            }
        }
        table.rows.sort_by_key(|row| severity(&row.health));
        table.note_throttled();
        table
    }

    /// One note for every resource waiting for its tenant's budget (there may be thousands).
    fn note_throttled(&mut self) {
        const NAMED: usize = 3;
        let Some(first) = self.throttled.first() else {
            return;
        };
        let more = match self.throttled.len() {
            1 => String::new(),
            n if n <= NAMED => format!(", {}", self.throttled[1..].join(", ")),
            n => format!(
                ", {} and {} more",
                self.throttled[1..NAMED].join(", "),
                n - NAMED
            ),
        };
        self.notes.push(format!(
            "{} waiting for a tenant's request budget ([polling] tenant_requests_per_minute): {first}{more}",
            plural(self.throttled.len() as u64, "resource"),
        ));
    }

    fn note_instance(&mut self, instance: &InstanceStatus) {
        if !instance.enabled {
            self.notes.push(format!(
                "instance {} ({}): disabled",
                instance.name, instance.file
            ));
        }
        if let Some(error) = &instance.error {
            self.notes.push(format!(
                "instance {} ({}): its file has an error, the last good version runs: {}",
                instance.name,
                instance.file,
                one_line(error)
            ));
        }
    }

    fn add_resource(&mut self, instance: &InstanceStatus, resource: &ResourceStatusView) {
        self.resource_count += 1;
        self.events_total += resource.events_emitted;
        if instance.enabled && resource.pollers != 1 {
            self.notes.push(format!(
                "instance {}, resource {}: {} poll tasks running, expected 1",
                instance.name, resource.name, resource.pollers
            ));
        }
        for panic in &resource.task_panics {
            self.notes.push(format!(
                "instance {}, resource {}: its {} task panicked {} (last at {} UTC: {}) and was started again; a bug, please report it",
                instance.name,
                resource.name,
                panic.task,
                plural(panic.panics, "time"),
                panic.last_at.format("%Y-%m-%d %H:%M:%S"),
                one_line(&panic.last_message)
            ));
        }
        self.note_reconcile(instance, resource);
        if resource.throttled.is_some() {
            self.throttled
                .push(format!("{}/{}", instance.name, resource.name));
        }
        self.rows.push(Row {
            health: resource.health.clone(),
            full: status_row(instance, resource),
            worst: worst_row(instance, resource),
        });
    }

    /// A reconcile stopped by the mass-delete guard, or failing, is worth a note.
    fn note_reconcile(&mut self, instance: &InstanceStatus, resource: &ResourceStatusView) {
        let Some(reconcile) = &resource.reconcile else {
            return;
        };
        if let Some(refused) = &reconcile.mass_delete_refused {
            self.notes.push(format!(
                "instance {}, resource {}: reconcile refused: it would report {} of {} known records as deleted; if they are gone, `pollerd reconcile {} --resource {} --allow-mass-delete`",
                instance.name,
                resource.name,
                refused.would_delete,
                refused.known,
                instance.name,
                resource.name
            ));
        } else if let Some(error) = &reconcile.last_error {
            self.notes.push(format!(
                "instance {}, resource {}: the last reconcile failed, nothing was reported: {}",
                instance.name,
                resource.name,
                one_line(error)
            ));
        }
    }
}

/// One resource in both layouts of the status table.
struct Row {
    health: Health,
    full: Vec<String>,
    worst: Vec<String>,
}

fn worst_row(instance: &InstanceStatus, resource: &ResourceStatusView) -> Vec<String> {
    let health = match &resource.health {
        Health::Failing { since } => format!("failing since {}", short_time(Some(*since))),
        Health::Backlog {
            queued,
            oldest: Some(oldest),
        } => format!("backlog {queued} (oldest {})", short_time(Some(*oldest))),
        other => other.to_string(),
    };
    vec![
        truncate(&instance.name, MAX_INSTANCE_WIDTH),
        truncate(&resource.name, MAX_RESOURCE_WIDTH),
        health,
        resource.outbox_depth.to_string(),
        resource.dead_letters.to_string(),
        joined([
            throttle_text(resource),
            resource.last_error.as_deref().map(one_line),
        ])
        .unwrap_or_else(|| "-".to_string()),
    ]
}

fn status_row(instance: &InstanceStatus, resource: &ResourceStatusView) -> Vec<String> {
    vec![
        truncate(&instance.name, MAX_INSTANCE_WIDTH),
        truncate(&resource.name, MAX_RESOURCE_WIDTH),
        short_time(resource.watermark),
        short_time(resource.last_poll),
        short_time(resource.next_poll),
        resource.events_emitted.to_string(),
        resource.outbox_depth.to_string(),
        resource.dead_letters.to_string(),
        health_cell(resource),
    ]
}

fn write_status_totals(out: &mut String, report: &StatusReport, table: &StatusTable) {
    let enabled = report
        .instances
        .iter()
        .filter(|instance| instance.enabled)
        .count() as u64;
    let line = format!(
        "total: {} ({enabled} enabled), {}, {} emitted, {} in the outbox, {}",
        plural(report.instances.len() as u64, "instance"),
        plural(table.resource_count, "resource"),
        plural(table.events_total, "event"),
        plural(report.outbox_depth, "notification"),
        plural(report.dead_letters, "dead letter"),
    );
    out.push_str(&wrap(&line, "", "  "));
}

/// Below the totals, when there are dead letters: how many are corrupt, since when, and how
/// many no row shows.
fn write_dead_letter_summary(out: &mut String, report: &StatusReport) {
    let Some(summary) = &report.dead_letter_summary else {
        return;
    };
    let mut line = format!("dead letters: {}", report.dead_letters);
    if summary.corrupt > 0 {
        let _ = write!(line, " ({} corrupt)", summary.corrupt);
    }
    let time = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S").to_string();
    match (summary.oldest, summary.newest) {
        (Some(oldest), Some(newest)) if oldest == newest => {
            let _ = write!(line, ", dead-lettered {} UTC", time(oldest));
        }
        (Some(oldest), Some(newest)) => {
            let _ = write!(
                line,
                ", dead-lettered from {} to {} UTC",
                time(oldest),
                time(newest)
            );
        }
        _ => {}
    }
    if summary.not_loaded > 0 {
        let _ = write!(line, ", {} of resources not loaded", summary.not_loaded);
    }
    line.push_str("; `pollerd dead-letters list` shows them");
    out.push_str(&wrap(&line, "", "  "));
}

/// The dead letters as a table (ids in full: they are what replay and drop take). A corrupt
/// entry is a row marked CORRUPT in the status column, with the bytes kept and why.
pub fn render_dead_letters(list: &[DeadLetterView]) -> String {
    if list.is_empty() {
        return "no dead letters\n".to_string();
    }
    // The id is normally the event id; a separate column only when some differ.
    let show_event_id = list.iter().any(|letter| letter.event_id != letter.id);
    let headers = dead_letter_headers(show_event_id);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|letter| dead_letter_row(letter, show_event_id))
        .collect();
    let count_columns: Vec<usize> = if show_event_id {
        vec![4, 5]
    } else {
        vec![3, 4]
    };
    let mut out = String::new();
    let truncated = write_table(&mut out, &headers, &rows, &count_columns);
    let _ = writeln!(out, "total: {}", plural(list.len() as u64, "dead letter"));
    write_corrupt_entries(&mut out, list);
    if truncated {
        out.push_str("(errors cut to fit)\n");
    }
    out
}

fn dead_letter_headers(show_event_id: bool) -> Vec<&'static str> {
    let mut headers = vec!["ID"];
    if show_event_id {
        headers.push("EVENT ID");
    }
    headers.extend([
        "INSTANCE",
        "RESOURCE",
        "ATTEMPTS",
        "STATUS",
        "CREATED (UTC)",
        "DEAD SINCE (UTC)",
        "LAST ERROR",
    ]);
    headers
}

fn dead_letter_row(letter: &DeadLetterView, show_event_id: bool) -> Vec<String> {
    let mut row = vec![letter.id.clone()];
    if show_event_id {
        row.push(or_dash(&letter.event_id));
    }
    row.extend([
        truncate(&or_dash(&letter.instance), MAX_INSTANCE_WIDTH),
        truncate(&or_dash(&letter.resource), MAX_RESOURCE_WIDTH),
    ]);
    match &letter.corrupt {
        None => row.extend([
            letter.attempts.to_string(),
            letter
                .last_status
                .map_or_else(|| "-".to_string(), |status| status.to_string()),
            letter.created_at.format("%m-%d %H:%M:%S").to_string(),
            letter.dead_at.format("%m-%d %H:%M:%S").to_string(),
            one_line(&letter.last_error),
        ]),
        Some(corrupt) => row.extend([
            "-".to_string(),
            "CORRUPT".to_string(),
            "-".to_string(),
            letter.dead_at.format("%m-%d %H:%M:%S").to_string(),
            one_line(&corrupt.reason),
        ]),
    }
    row
}

/// Below the table: each corrupt entry with the size of the bytes kept and why it is corrupt.
fn write_corrupt_entries(out: &mut String, list: &[DeadLetterView]) {
    let corrupt: Vec<(&str, &CorruptView)> = list
        .iter()
        .filter_map(|letter| Some((letter.id.as_str(), letter.corrupt.as_ref()?)))
        .collect();
    if corrupt.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{} (stored bytes that could not be read, moved aside and kept; they cannot be replayed, `pollerd dead-letters drop ID` removes one):",
        match corrupt.len() {
            1 => "1 corrupt entry".to_string(),
            count => format!("{count} corrupt entries"),
        }
    );
    for (id, corrupt) in corrupt {
        let line = format!(
            "{id}: {} kept; {}",
            plural(corrupt.size, "byte"),
            one_line(&corrupt.reason)
        );
        out.push_str(&wrap(&line, "  ", "    "));
    }
}

fn or_dash(text: &str) -> String {
    match text.is_empty() {
        true => "-".to_string(),
        false => text.to_string(),
    }
}

/// Writes aligned columns; the last column takes what is left of the screen and is cut to it.
/// `right_aligned` lists number columns. Returns whether any last-column cell was cut.
fn write_table(
    out: &mut String,
    headers: &[&str],
    rows: &[Vec<String>],
    right_aligned: &[usize],
) -> bool {
    let last = headers.len() - 1;
    let mut widths: Vec<usize> = headers.iter().map(|header| width(header)).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate().take(last) {
            widths[column] = widths[column].max(width(cell));
        }
    }
    let used: usize = widths[..last].iter().sum::<usize>() + COLUMN_GAP.len() * last;
    let last_width = SCREEN_WIDTH.saturating_sub(used).max(MIN_ERROR_WIDTH);
    let mut truncated = false;
    let mut write_row = |out: &mut String, cells: &[&str]| {
        let mut line = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column == last {
                let cut = truncate(cell, last_width);
                truncated |= cut != *cell;
                line.push_str(&cut);
            } else {
                let padding = " ".repeat(widths[column] - width(cell));
                if right_aligned.contains(&column) {
                    line.push_str(&padding);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&padding);
                }
                line.push_str(COLUMN_GAP);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    write_row(out, headers);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        write_row(out, &cells);
    }
    truncated
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// Cuts `text` to at most `max` characters, marking the cut with "…".
fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Word-wraps `text` to the screen width: `first` before the first line, `rest` before the
/// others. A word longer than a line is cut rather than overflow.
fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut line_has_word = false;
    for word in text.split_whitespace() {
        if line_has_word && width(&line) + 1 + width(word) > SCREEN_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            line_has_word = false;
        }
        if line_has_word {
            line.push(' ');
        }
        let room = SCREEN_WIDTH - width(&line);
        line.push_str(&truncate(word, room));
        line_has_word = true;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Error texts may hold newlines (provider bodies); a table row must not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The time alone when it is today (UTC), else as [`short_time`]: the health word must fit
/// the last column.
fn short_time_today(time: DateTime<Utc>) -> String {
    match time.date_naive() == Utc::now().date_naive() {
        true => time.format("%H:%M:%S").to_string(),
        false => short_time(Some(time)),
    }
}

/// Month, day and time, UTC: the year adds width and rarely information here.
fn short_time(time: Option<DateTime<Utc>>) -> String {
    time.map_or_else(
        || "-".to_string(),
        |time| time.format("%m-%d %H:%M:%S").to_string(),
    )
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_marks_the_cut_and_keeps_short_text() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(width(&truncate("ééééééé", 3)), 3);
    }

    #[test]
    fn wrap_keeps_lines_within_the_screen() {
        let text = format!("{} {}", "word ".repeat(60), "y".repeat(300));
        let wrapped = wrap(&text, "note: ", "      ");
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() >= 3, "{wrapped}");
        assert!(lines[0].starts_with("note: word"));
        assert!(lines[1].starts_with("      word"));
        assert!(lines.iter().all(|line| width(line) <= SCREEN_WIDTH));
        let words: Vec<&str> = wrapped.split_whitespace().collect();
        assert_eq!(words.iter().filter(|word| **word == "word").count(), 60);
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(
            one_line("500 Internal\n  {\"code\": 1}\n"),
            "500 Internal {\"code\": 1}"
        );
    }

    #[test]
    fn a_corrupt_entry_is_a_row_marked_corrupt_beside_the_dead_letters() {
        let at = |minute| {
            DateTime::parse_from_rfc3339(&format!("2026-01-01T12:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        let letter = DeadLetterView {
            id: "e1".into(),
            instance: "API_Polling".into(),
            resource: "contacts".into(),
            event_id: "e1".into(),
            attempts: 10,
            last_status: Some(410),
            last_error: "410 Gone".into(),
            created_at: at(0),
            dead_at: at(30),
            corrupt: None,
        };
        let corrupt = DeadLetterView {
            id: "corrupt-77".into(),
            event_id: String::new(),
            attempts: 0,
            last_status: None,
            last_error: "outbox run 5: truncated".into(),
            created_at: at(40),
            dead_at: at(40),
            corrupt: Some(CorruptView {
                size: 3,
                reason: "outbox run 5: truncated".into(),
            }),
            ..letter.clone()
        };
        let table = render_dead_letters(&[letter, corrupt]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("EVENT ID"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("e1") && lines[1].contains("410 Gone"),
            "{table}"
        );
        let row = lines[2];
        assert!(row.starts_with("corrupt-77"), "{table}");
        assert!(
            row.contains("CORRUPT") && row.contains("outbox run"),
            "{table}"
        );
        assert!(
            table.contains("total: 2 dead letters\n1 corrupt entry ("),
            "{table}"
        );
        assert!(
            table.contains("\n  corrupt-77: 3 bytes kept; outbox run 5: truncated\n"),
            "{table}"
        );
    }

    #[test]
    fn the_dead_letter_summary_is_a_line_below_the_totals_when_there_are_any() {
        let at = |minute| {
            DateTime::parse_from_rfc3339(&format!("2026-01-01T12:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut report = StatusReport {
            version: "0.1.0".into(),
            pid: 1,
            started_at: at(0),
            instances: Vec::new(),
            outbox_depth: 0,
            dead_letters: 0,
            dead_letter_summary: None,
            last_reload: None,
            cluster: None,
        };
        assert!(!render_status(&report).contains("dead letters:"));
        report.dead_letters = 5;
        report.dead_letter_summary = Some(admin::DeadLetterSummaryView {
            corrupt: 1,
            oldest: Some(at(5)),
            newest: Some(at(30)),
            not_loaded: 2,
        });
        let text = render_status(&report);
        assert!(
            text.lines().all(|line| width(line) <= SCREEN_WIDTH),
            "{text}"
        );
        // Read as one line (it wraps onto indented ones).
        assert!(
            text.replace("\n  ", " ").ends_with(
                "\ndead letters: 5 (1 corrupt), dead-lettered from 2026-01-01 12:05:00 to \
                 2026-01-01 12:30:00 UTC, 2 of resources not loaded; `pollerd dead-letters \
                 list` shows them\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn table_aligns_columns_and_cuts_the_last_to_the_screen() {
        let mut out = String::new();
        let long_error = "x".repeat(200);
        let rows = vec![
            vec!["a".to_string(), "7".to_string(), long_error.clone()],
            vec!["bbbb".to_string(), "12".to_string(), "short".to_string()],
        ];
        let truncated = write_table(&mut out, &["NAME", "N", "ERROR"], &rows, &[1]);
        assert!(truncated);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME   N  ERROR");
        assert!(lines[1].starts_with("a      7  xxx"));
        assert!(lines[1].ends_with('…'));
        assert_eq!(width(lines[1]), SCREEN_WIDTH);
        assert_eq!(lines[2], "bbbb  12  short");
    }
}
