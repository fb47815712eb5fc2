//! `[[pulls]]`: third-party HTTP APIs pulled on a schedule, window by window, into lake
//! tables. What the user writes; [`PullConfig::validate`] checks it offline (no request is
//! made, no environment variable needs to be set) and [`crate::Pull::new`] compiles it
//! (templates, paths, schedule) for the runner.
//!
//! ```toml
//! [[pulls]]
//! name = "orders"
//! schedule = "0 * * * *"                 # hourly windows
//! delay = "5m"                           # pull [10:00, 11:00) at 11:05
//! url = "https://api.example.com/v1/orders?updated_from={start}&updated_to={end}"
//! headers = { Authorization = "Bearer ${env:ORDERS_API_TOKEN}" }
//! records = "$.data"
//! pagination = { kind = "cursor", cursor = "$.meta.next_cursor", param = "cursor" }
//! rate_limit = 5.0
//! fields = [
//!   { name = "order_id", path = "$.id", type = "long" },
//!   { name = "updated_at", type = "timestamp" },
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use iceberg::{NamespaceIdent, TableIdent};
use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};

use crate::jsonpath::JsonPath;
use crate::template::{Template, VARIABLES};
use crate::window::{parse_time, Schedule, Window};

/// One `[[pulls]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    /// The pull's name (letters, digits, `_`): `strata pulls run NAME`, the state file
    /// `<data>/pulls/<name>.json` and the default table `ods.ods_pull_<name>`.
    pub name: String,
    /// When windows end: a cron expression (minute hour day-of-month month day-of-week, UTC).
    /// Consecutive firings bound the windows: `0 * * * *` pulls hourly windows
    /// `[10:00, 11:00)`, `0 0 * * *` daily ones. `strata serve` pulls each window when it
    /// ends (plus `delay`).
    pub schedule: String,
    /// Wait this long after a window ends before pulling it (data the API reports late).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// The first window `strata serve` pulls (RFC 3339, or a date = midnight UTC): windows from
    /// here that were never pulled are caught up, oldest first. Empty: start with the latest
    /// window that is due.
    pub start: String,
    /// The request URL, a template: `{start}`, `{end}` (RFC 3339 UTC), `{ds}` (the start's
    /// date), `{start_unix}`, `{end_unix}`, `{start_ms}`, `{end_ms}`; `${env:NAME}` inserts an
    /// environment variable (a key in the query string); `{{` / `}}` are literal braces.
    pub url: String,
    /// JSON path of the records in each response: an array (`$.data`, `$.result.items`), or
    /// `$` when the body is the array. `null` there means no records.
    pub records: String,
    /// Requests per second at most, retries included (0: no limit).
    pub rate_limit: f64,
    /// One request (connect, headers and body) may take this long; longer is a timeout,
    /// retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries per request: timeouts, connection errors, 429 and 5xx answers are retried until
    /// this many attempts; then the window fails and writes nothing.
    pub max_attempts: u32,
    /// The wait before the first retry, doubling after each (unless the server's
    /// `Retry-After` says how long).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// The longest wait between retries the backoff grows to.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The longest `Retry-After` (seconds or an HTTP date) honoured; a server asking for more
    /// fails the window (it is tried again later).
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// `strata serve` tries a failed window again after this long (and again, until it
    /// succeeds or `strata pulls run` pulls it).
    #[serde(with = "humantime_serde")]
    pub retry_failed_after: Duration,
    /// The lake table, `namespace.table` (created on the first window). Default
    /// `ods.ods_pull_<name>`. Columns: `window_start` (the partition), `window_end`, `dt`
    /// (the start's date), the declared `fields`, `record` (the record as JSON text) and
    /// `pulled_at`.
    pub table: String,
    /// Request headers; values are templates like `url` (`"Bearer ${env:API_TOKEN}"`: keep
    /// secrets in the environment, not in this file).
    pub headers: BTreeMap<String, String>,
    /// How the next page is found (none by default: one request per window).
    pub pagination: Pagination,
    /// Typed columns taken from each record, beside the JSON text.
    pub fields: Vec<FieldConfig>,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            name: String::new(),
            schedule: String::new(),
            delay: Duration::ZERO,
            start: String::new(),
            url: String::new(),
            headers: BTreeMap::new(),
            records: "$".to_string(),
            pagination: Pagination::default(),
            rate_limit: 10.0,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
            retry_failed_after: Duration::from_secs(900),
            table: String::new(),
            fields: Vec::new(),
        }
    }
}

/// How a pull finds the next page of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageKind {
    /// One request per window.
    #[default]
    None,
    /// The next page's URL is in the body (`next`) or in the `Link: <…>; rel="next"` header.
    NextLink,
    /// A cursor from the body (`cursor`) is sent as the query parameter `param`.
    Cursor,
    /// Page numbers in the query parameter `param` from `first_page` up.
    Page,
}

impl PageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PageKind::None => "none",
            PageKind::NextLink => "next_link",
            PageKind::Cursor => "cursor",
            PageKind::Page => "page",
        }
    }
}

/// `pagination = { kind = …, … }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pagination {
    /// `none`, `next_link`, `cursor` or `page`.
    pub kind: PageKind,
    /// next_link: JSON path of the next page's URL in the body (absolute, or relative to the
    /// request's URL); absent, null or "" on the last page. Empty: the `Link` header's
    /// `rel="next"` instead.
    pub next: String,
    /// cursor: JSON path of the next cursor in the body; absent, null or "" on the last page.
    pub cursor: String,
    /// cursor / page: the query parameter the cursor or page number goes in (default
    /// `cursor` / `page`).
    pub param: String,
    /// page: the first page's number.
    pub first_page: u64,
    /// page: the query parameter for the page size (empty: none sent).
    pub size_param: String,
    /// page: records per page. A page with fewer is the last; 0: only an empty page is.
    pub page_size: u64,
    /// More pages than this in one window fails it (a loop in the API's links or cursors).
    pub max_pages: u64,
}

impl Default for Pagination {
    fn default() -> Self {
        Pagination {
            kind: PageKind::None,
            next: String::new(),
            cursor: String::new(),
            param: String::new(),
            first_page: 1,
            size_param: String::new(),
            page_size: 0,
            max_pages: 10_000,
        }
    }
}

impl Pagination {
    /// The query parameter of a cursor or page number.
    pub fn param(&self) -> &str {
        match (self.param.is_empty(), self.kind) {
            (false, _) => self.param.as_str(),
            (true, PageKind::Cursor) => "cursor",
            (true, _) => "page",
        }
    }
}

/// A typed column from each record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The column's name.
    pub name: String,
    /// JSON path in the record (default `$.<name>`).
    #[serde(default)]
    pub path: String,
    /// `string`, `long`, `double`, `boolean`, `timestamp` (RFC 3339 text or epoch seconds),
    /// `timestamp_ms` (epoch milliseconds) or `date` (`2026-12-06`). A value that does not
    /// convert is NULL (the record's JSON keeps it) and is counted in the window's status.
    #[serde(rename = "type")]
    pub kind: FieldType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Long,
    Double,
    Boolean,
    Timestamp,
    TimestampMs,
    Date,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Long => "long",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
            FieldType::TimestampMs => "timestamp_ms",
            FieldType::Date => "date",
        }
    }
}

/// Columns every pull table has; a declared field may not take these names.
pub const RESERVED_COLUMNS: &[&str] = &["window_start", "window_end", "dt", "record", "pulled_at"];

impl PullConfig {
    /// How problems name this entry: `pulls.<name>` (or `pulls[<i>]` without a name).
    pub fn label(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("pulls[{index}]")
        } else {
            format!("pulls.{}", self.name)
        }
    }

    /// The target table.
    pub fn table_ident(&self) -> Result<TableIdent, String> {
        let text = if self.table.is_empty() {
            format!("ods.ods_pull_{}", self.name)
        } else {
            self.table.clone()
        };
        let Some((ns, name)) = text.split_once('.') else {
            return Err(format!("table {text:?} must be namespace.table"));
        };
        strata_core::names::check_namespace(&[ns])?;
        strata_core::names::check_name("table name", name)?;
        Ok(TableIdent::new(
            NamespaceIdent::new(ns.to_string()),
            name.to_string(),
        ))
    }

    /// Every problem of the entry (the `index`-th), one message each. Pure: no request, no
    /// environment variable read.
    pub fn validate(&self, index: usize) -> Result<(), Vec<String>> {
        let at = self.label(index);
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| problems.push(format!("{at}.{key}: {message}"));
        if self.name.is_empty() {
            bad("name", "is required (letters, digits and '_')".into());
        } else if !self
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            bad(
                "name",
                format!("{:?} may hold only a-z, 0-9 and '_'", self.name),
            );
        }
        if self.schedule.trim().is_empty() {
            bad(
                "schedule",
                "is required: a cron expression (e.g. \"0 * * * *\" for hourly windows)".into(),
            );
        } else if let Err(e) = Schedule::new(&self.schedule, self.delay) {
            bad("schedule", e);
        }
        if !self.start.is_empty() {
            if let Err(e) = parse_time(&self.start) {
                bad("start", e);
            }
        }
        if self.url.is_empty() {
            bad("url", "is required".into());
        } else {
            match Template::parse(&self.url) {
                Err(e) => bad("url", e),
                Ok(t) => {
                    let sample = sample_window();
                    let shown = t
                        .render(&sample, &|_| Some("x".to_string()))
                        .map(|r| r.text);
                    match shown.as_deref().map(reqwest::Url::parse) {
                        Ok(Ok(u)) if u.scheme() == "http" || u.scheme() == "https" => {}
                        Ok(Ok(u)) => bad(
                            "url",
                            format!("{:?} is not http:// or https://", u.scheme()),
                        ),
                        Ok(Err(e)) => bad("url", format!("{:?} is not a URL: {e}", self.url)),
                        Err(_) => {}
                    }
                }
            }
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                bad("headers", format!("{name:?} is not a header name"));
            }
            if let Err(e) = Template::parse(value) {
                bad(&format!("headers.{name}"), e);
            }
        }
        if let Err(e) = JsonPath::parse(&self.records) {
            bad("records", e);
        }
        for (key, message) in self.pagination.problems() {
            bad(&format!("pagination.{key}"), message);
        }
        if !self.rate_limit.is_finite() || self.rate_limit < 0.0 {
            bad(
                "rate_limit",
                "must be a number of requests per second, 0 or more".into(),
            );
        }
        if self.timeout.is_zero() {
            bad("timeout", "must be positive".into());
        }
        if self.max_attempts == 0 {
            bad("max_attempts", "must be at least 1".into());
        }
        if self.backoff > self.max_backoff {
            bad("backoff", "cannot exceed max_backoff".into());
        }
        if self.retry_failed_after.is_zero() {
            bad("retry_failed_after", "must be positive".into());
        }
        if !self.name.is_empty() || !self.table.is_empty() {
            if let Err(e) = self.table_ident() {
                bad("table", e);
            }
        }
        let mut names = BTreeSet::new();
        for f in &self.fields {
            let key = format!("fields.{}", f.name);
            if let Err(e) = strata_core::names::check_name("column name", &f.name) {
                bad(&key, e);
            }
            if RESERVED_COLUMNS.contains(&f.name.as_str()) {
                bad(
                    &key,
                    format!(
                        "{:?} is one of the columns every pull table has ({})",
                        f.name,
                        RESERVED_COLUMNS.join(", ")
                    ),
                );
            }
            if !names.insert(f.name.as_str()) {
                bad(&key, "is declared twice".into());
            }
            if let Err(e) = JsonPath::parse(&f.path_text()) {
                bad(&format!("{key}.path"), e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The environment variables the URL and headers read.
    pub fn env_names(&self) -> Vec<String> {
        let mut names = BTreeSet::new();
        for text in std::iter::once(&self.url).chain(self.headers.values()) {
            if let Ok(t) = Template::parse(text) {
                names.extend(t.env_names().map(str::to_string));
            }
        }
        names.into_iter().collect()
    }
}

impl FieldConfig {
    /// The path as written, or `$.<name>`.
    pub fn path_text(&self) -> String {
        if self.path.is_empty() {
            format!("$['{}']", self.name)
        } else {
            self.path.clone()
        }
    }
}

impl Pagination {
    /// (key, message) for each problem.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let kind = self.kind;
        let only_for = |key: &'static str, kinds: &str| {
            (
                key,
                format!(
                    "is for kind = {kinds}; this pagination is kind = \"{}\"",
                    kind.as_str()
                ),
            )
        };
        if !self.next.is_empty() {
            if kind != PageKind::NextLink {
                problems.push(only_for("next", "\"next_link\""));
            } else if let Err(e) = JsonPath::parse(&self.next) {
                problems.push(("next", e));
            }
        }
        match (kind, self.cursor.is_empty()) {
            (PageKind::Cursor, true) => problems.push((
                "cursor",
                "is required for kind = \"cursor\": the JSON path of the next cursor".to_string(),
            )),
            (PageKind::Cursor, false) => {
                if let Err(e) = JsonPath::parse(&self.cursor) {
                    problems.push(("cursor", e));
                }
            }
            (_, false) => problems.push(only_for("cursor", "\"cursor\"")),
            (_, true) => {}
        }
        let paged = matches!(kind, PageKind::Cursor | PageKind::Page);
        if !self.param.is_empty() && !paged {
            problems.push(only_for("param", "\"cursor\" or \"page\""));
        }
        if kind != PageKind::Page {
            if !self.size_param.is_empty() {
                problems.push(only_for("size_param", "\"page\""));
            }
            if self.page_size != 0 {
                problems.push(only_for("page_size", "\"page\""));
            }
            if self.first_page != 1 {
                problems.push(only_for("first_page", "\"page\""));
            }
        } else if !self.size_param.is_empty() && self.page_size == 0 {
            problems.push((
                "page_size",
                "is required with size_param (the size to ask for)".to_string(),
            ));
        }
        if self.max_pages == 0 {
            problems.push(("max_pages", "must be at least 1".to_string()));
        }
        problems
    }
}

/// Checks a whole `pulls` list: each entry, then names and tables unique.
pub fn validate_list(pulls: &[PullConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut tables = BTreeMap::new();
    for (i, pull) in pulls.iter().enumerate() {
        if let Err(found) = pull.validate(i) {
            problems.extend(found);
        }
        if !pull.name.is_empty() && !names.insert(pull.name.as_str()) {
            problems.push(format!("pulls: two pulls are named {:?}", pull.name));
        }
        if let Ok(table) = pull.table_ident() {
            if let Some(other) = tables.insert(table.to_string(), pull.name.as_str()) {
                if other != pull.name {
                    problems.push(format!(
                        "pulls: {other} and {} both write {table}",
                        pull.name
                    ));
                }
            }
        }
    }
    problems
}

/// What `strata check` adds with the environment at hand: variables the templates read that
/// are not set.
pub fn missing_env(pulls: &[PullConfig], env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, pull) in pulls.iter().enumerate() {
        for name in pull.env_names() {
            if env(&name).is_none() {
                problems.push(format!(
                    "{}: environment variable {name} is not set (the url or a header reads ${{env:{name}}})",
                    pull.label(i)
                ));
            }
        }
    }
    problems
}

/// Header values that hold a secret written into the file (not read from the environment)
/// become `<redacted>`, for `strata check`'s printout.
pub fn redact_headers(pulls: &mut [PullConfig]) {
    for pull in pulls {
        for (name, value) in pull.headers.iter_mut() {
            let lower = name.to_ascii_lowercase();
            let secret = [
                "authorization",
                "cookie",
                "token",
                "key",
                "secret",
                "password",
            ]
            .iter()
            .any(|w| lower.contains(w));
            if secret && !value.contains("${env:") {
                *value = "<redacted>".to_string();
            }
        }
    }
}

fn sample_window() -> Window {
    let start = chrono::DateTime::from_timestamp(1_796_515_200, 0).unwrap_or_default();
    Window {
        start,
        end: start + chrono::Duration::hours(1),
    }
}

/// The variables' names and meanings (for docs and errors).
pub fn variables() -> &'static [(&'static str, &'static str)] {
    VARIABLES
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
