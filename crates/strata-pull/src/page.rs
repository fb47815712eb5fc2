//! One window's pages: the first request from the URL template, then the next ones as the
//! pagination says (a next link in the body or the `Link` header, a cursor, page numbers),
//! until the last page. Every page's records are kept for the window's one commit.

use std::collections::HashSet;

use reqwest::Url;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::{link_next, Fetcher};
use crate::pull::{Paging, Pull};
use crate::template::EnvLookup;
use crate::window::Window;

/// Every page's records for `window`, in order.
pub async fn fetch_window(
    pull: &Pull,
    window: &Window,
    fetcher: &mut Fetcher,
    env: &EnvLookup,
) -> Result<Vec<Vec<Value>>> {
    let first = pull.url(window, env)?;
    let secrets = pull.secrets(env);
    let show = |url: &Url| mask(url.as_str(), &secrets);
    let mut url = Url::parse(&first.text).map_err(|e| {
        Error::Config(format!(
            "pulls.{}.url: {} is not a URL: {e}",
            pull.name(),
            first.shown
        ))
    })?;
    let headers = pull.headers(window, env)?;
    let mut page_number = 0;
    if let Paging::Page {
        param,
        first,
        size_param,
        size,
    } = &pull.paging
    {
        page_number = *first;
        set_param(&mut url, param, &page_number.to_string());
        if let Some(size_param) = size_param {
            set_param(&mut url, size_param, &size.to_string());
        }
    }
    let mut pages = Vec::new();
    let mut seen = HashSet::new();
    loop {
        if pages.len() as u64 >= pull.max_pages {
            return Err(Error::Response(format!(
                "window {window}: more than {} pages (pulls.{}.pagination.max_pages); the last asked for was {}",
                pull.max_pages,
                pull.name(),
                show(&url)
            )));
        }
        let shown = show(&url);
        let page = fetcher.get_json(&url, &shown, &headers).await?;
        let mut body = page.body;
        // What leads to the next page is read before the records are moved out of the body.
        let next = match &pull.paging {
            Paging::None => None,
            Paging::NextLink(Some(path)) => text_at(path.get(&body), "next link", &shown)?,
            Paging::NextLink(None) => link_next(&page.headers),
            Paging::Cursor { path, .. } => text_at(path.get(&body), "cursor", &shown)?,
            Paging::Page { .. } => None,
        };
        let records = match pull.records.take(&mut body) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => Vec::new(),
            Some(other) => {
                return Err(Error::Response(format!(
                    "GET {shown}: {} is {}, not an array of records (pulls.{}.records)",
                    pull.records,
                    kind_of(&other),
                    pull.name()
                )))
            }
            None => {
                return Err(Error::Response(format!(
                    "GET {shown}: the response has nothing at {} (pulls.{}.records)",
                    pull.records,
                    pull.name()
                )))
            }
        };
        let count = records.len() as u64;
        pages.push(records);
        match &pull.paging {
            Paging::None => break,
            Paging::NextLink(_) => {
                let Some(target) = next else { break };
                url = url.join(&target).map_err(|e| {
                    Error::Response(format!(
                        "GET {shown}: the next link {target:?} is not a URL: {e}"
                    ))
                })?;
                if !seen.insert(url.to_string()) {
                    return Err(Error::Response(format!(
                        "GET {shown}: the next link {} was followed before (a pagination loop)",
                        show(&url)
                    )));
                }
            }
            Paging::Cursor { param, .. } => {
                let Some(cursor) = next else { break };
                if !seen.insert(cursor.clone()) {
                    return Err(Error::Response(format!(
                        "GET {shown}: the cursor {cursor:?} was returned before (a pagination loop)"
                    )));
                }
                set_param(&mut url, param, &cursor);
            }
            Paging::Page { param, size, .. } => {
                if count == 0 || (*size > 0 && count < *size) {
                    break;
                }
                page_number += 1;
                set_param(&mut url, param, &page_number.to_string());
            }
        }
    }
    Ok(pages)
}

/// A next link or cursor: a string or a number; absent, null or "" = the last page.
fn text_at(value: Option<&Value>, what: &str, shown: &str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(Error::Response(format!(
            "GET {shown}: the {what} is {}, not a string",
            kind_of(other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Sets query parameter `name` to `value`, replacing any value it had. The other parameters
/// stay exactly as written (not re-encoded).
pub fn set_param(url: &mut Url, name: &str, value: &str) {
    let key = encode(name);
    let mut parts: Vec<String> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(key.as_str()))
        .map(str::to_string)
        .collect();
    parts.push(format!("{key}={}", encode(value)));
    url.set_query(Some(&parts.join("&")));
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` with every secret value replaced by `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_set_and_replaced() {
        let mut url = Url::parse("https://x/items?from=2026-12-06T00:00:00Z&page=1").unwrap();
        set_param(&mut url, "page", "2");
        set_param(&mut url, "cursor", "a b&c");
        assert_eq!(
            url.as_str(),
            "https://x/items?from=2026-12-06T00:00:00Z&page=2&cursor=a%20b%26c"
        );
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask("https://x/items?key=s3cr3t&page=2", &["s3cr3t".into()]),
            "https://x/items?key=***&page=2"
        );
    }
}
