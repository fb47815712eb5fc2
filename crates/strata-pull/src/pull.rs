//! A `[[pulls]]` entry compiled for running: its schedule, templates, paths and target table,
//! each parsed once.

use iceberg::TableIdent;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{FieldConfig, FieldType, PageKind, PullConfig};
use crate::error::{Error, Result};
use crate::http::RetryPolicy;
use crate::jsonpath::JsonPath;
use crate::template::{EnvLookup, Rendered, Template};
use crate::window::{parse_time, Schedule, Window};

/// A typed column taken from each record.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub path: JsonPath,
    pub kind: FieldType,
}

/// How the next page is found, paths parsed.
#[derive(Debug, Clone)]
pub enum Paging {
    None,
    /// The body's path, or `None` for the `Link` header.
    NextLink(Option<JsonPath>),
    Cursor {
        path: JsonPath,
        param: String,
    },
    Page {
        param: String,
        first: u64,
        size_param: Option<String>,
        size: u64,
    },
}

/// A pull, ready to run.
#[derive(Debug, Clone)]
pub struct Pull {
    pub config: PullConfig,
    pub schedule: Schedule,
    pub table: TableIdent,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    pub records: JsonPath,
    pub paging: Paging,
    pub max_pages: u64,
    pub fields: Vec<Field>,
    /// The first window the scheduler pulls, when set.
    pub start: Option<chrono::DateTime<chrono::Utc>>,
}

impl Pull {
    /// Compiles `config` (the `index`-th entry); its problems, one per line, when it does not
    /// validate.
    pub fn new(config: &PullConfig, index: usize) -> Result<Pull> {
        config
            .validate(index)
            .map_err(|problems| Error::Config(problems.join("\n")))?;
        let cfg = |e: String| Error::Config(format!("{}: {e}", config.label(index)));
        let schedule = Schedule::new(&config.schedule, config.delay).map_err(cfg)?;
        let table = config.table_ident().map_err(cfg)?;
        let url = Template::parse(&config.url).map_err(cfg)?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| cfg(format!("header {name:?}: {e}")))?;
                Ok((name, Template::parse(value).map_err(cfg)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let records = JsonPath::parse(&config.records).map_err(cfg)?;
        let p = &config.pagination;
        let paging = match p.kind {
            PageKind::None => Paging::None,
            PageKind::NextLink if p.next.is_empty() => Paging::NextLink(None),
            PageKind::NextLink => Paging::NextLink(Some(JsonPath::parse(&p.next).map_err(cfg)?)),
            PageKind::Cursor => Paging::Cursor {
                path: JsonPath::parse(&p.cursor).map_err(cfg)?,
                param: p.param().to_string(),
            },
            PageKind::Page => Paging::Page {
                param: p.param().to_string(),
                first: p.first_page,
                size_param: (!p.size_param.is_empty()).then(|| p.size_param.clone()),
                size: p.page_size,
            },
        };
        let fields = config
            .fields
            .iter()
            .map(|f: &FieldConfig| {
                Ok(Field {
                    name: f.name.clone(),
                    path: JsonPath::parse(&f.path_text()).map_err(cfg)?,
                    kind: f.kind,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let start = if config.start.is_empty() {
            None
        } else {
            Some(parse_time(&config.start).map_err(cfg)?)
        };
        Ok(Pull {
            config: config.clone(),
            schedule,
            table,
            url,
            headers,
            records,
            paging,
            max_pages: p.max_pages,
            fields,
            start,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The first page's URL for `window`.
    pub fn url(&self, window: &Window, env: &EnvLookup) -> Result<Rendered> {
        self.url.render(window, env).map_err(|missing| {
            Error::Config(format!(
                "pulls.{}.url: environment variable {} is not set",
                self.name(),
                missing.0
            ))
        })
    }

    /// The request headers for `window`.
    pub fn headers(&self, window: &Window, env: &EnvLookup) -> Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for (name, template) in &self.headers {
            let value = template.render(window, env).map_err(|missing| {
                Error::Config(format!(
                    "pulls.{}.headers.{name}: environment variable {} is not set",
                    self.name(),
                    missing.0
                ))
            })?;
            let mut value = HeaderValue::from_str(&value.text).map_err(|_| {
                Error::Config(format!(
                    "pulls.{}.headers.{name}: the value ({}) is not a valid header value",
                    self.name(),
                    value.shown
                ))
            })?;
            if template.env_names().next().is_some() {
                value.set_sensitive(true);
            }
            map.insert(name.clone(), value);
        }
        Ok(map)
    }

    /// The values of the environment variables the URL and headers read: masked wherever a
    /// URL is shown (a next link may echo a key from the query string).
    pub fn secrets(&self, env: &EnvLookup) -> Vec<String> {
        std::iter::once(&self.url)
            .chain(self.headers.iter().map(|(_, t)| t))
            .flat_map(|t| t.env_names())
            .filter_map(env)
            .collect()
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.config.max_attempts,
            backoff: self.config.backoff,
            max_backoff: self.config.max_backoff,
            max_retry_after: self.config.max_retry_after,
        }
    }
}

/// Compiles every entry; all problems in one error.
pub fn compile_all(configs: &[PullConfig]) -> Result<Vec<Pull>> {
    let mut pulls = Vec::new();
    let mut problems = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        match Pull::new(c, i) {
            Ok(p) => pulls.push(p),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(pulls)
    } else {
        Err(Error::Config(problems.join("\n")))
    }
}
