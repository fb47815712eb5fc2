//! URL and header templates: `{start}`, `{end}`, `{ds}` … filled with the window being pulled,
//! `${env:NAME}` with an environment variable (secrets stay out of `strata.toml`), `{{` and
//! `}}` for literal braces.
//!
//! A template is parsed once ([`Template::parse`], which `strata check` runs offline), then
//! rendered per window. Rendering also gives a copy with every environment value shown as
//! `***`, for logs and error messages.

use std::fmt;

use crate::window::Window;

/// The window variables a template may use.
pub const VARIABLES: &[(&str, &str)] = &[
    (
        "start",
        "the window's start, RFC 3339 UTC (2026-12-06T00:00:00Z)",
    ),
    ("end", "the window's end (exclusive), RFC 3339 UTC"),
    ("ds", "the date of the window's start (2026-12-06)"),
    ("start_unix", "the window's start in epoch seconds"),
    ("end_unix", "the window's end in epoch seconds"),
    ("start_ms", "the window's start in epoch milliseconds"),
    ("end_ms", "the window's end in epoch milliseconds"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(&'static str),
    Env(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Looks up an environment variable (`std::env::var` in production; a map in tests).
pub type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A rendered template: the text to send and the text to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// `text` with every `${env:…}` value replaced by `***`.
    pub shown: String,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// What went wrong rendering: an environment variable that is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingEnv(pub String);

impl Template {
    /// Parses `text`; errors say what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '$' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    let inner = take_until_close(&mut chars)
                        .ok_or_else(|| format!("\"${{\" at {at} is not closed by \"}}\""))?;
                    let name = inner.strip_prefix("env:").ok_or_else(|| {
                        format!("${{{inner}}}: only ${{env:NAME}} is supported (an environment variable)")
                    })?;
                    check_env_name(name)?;
                    flush(&mut parts, &mut literal);
                    parts.push(Part::Env(name.to_string()));
                }
                '{' => {
                    let inner = take_until_close(&mut chars)
                        .ok_or_else(|| format!("\"{{\" at {at} is not closed by \"}}\" (write {{{{ for a literal brace)"))?;
                    let var = VARIABLES
                        .iter()
                        .find(|(name, _)| *name == inner)
                        .map(|(name, _)| *name)
                        .ok_or_else(|| {
                            format!(
                                "{{{inner}}} is not a window variable (use {})",
                                VARIABLES
                                    .iter()
                                    .map(|(n, _)| format!("{{{n}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    flush(&mut parts, &mut literal);
                    parts.push(Part::Var(var));
                }
                '}' => {
                    return Err(format!(
                        "\"}}\" at {at} closes nothing (write }}}} for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        flush(&mut parts, &mut literal);
        Ok(Template { parts })
    }

    /// The environment variables the template reads.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Env(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The template filled for `window`, environment values from `env`.
    pub fn render(&self, window: &Window, env: &EnvLookup) -> Result<Rendered, MissingEnv> {
        let mut text = String::new();
        let mut shown = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    text.push_str(t);
                    shown.push_str(t);
                }
                Part::Var(var) => {
                    let value = variable(var, window);
                    text.push_str(&value);
                    shown.push_str(&value);
                }
                Part::Env(name) => {
                    let value = env(name).ok_or_else(|| MissingEnv(name.clone()))?;
                    text.push_str(&value);
                    shown.push_str("***");
                }
            }
        }
        Ok(Rendered { text, shown })
    }
}

fn flush(parts: &mut Vec<Part>, literal: &mut String) {
    if !literal.is_empty() {
        parts.push(Part::Text(std::mem::take(literal)));
    }
}

fn take_until_close(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<String> {
    let mut inner = String::new();
    for (_, c) in chars.by_ref() {
        if c == '}' {
            return Some(inner);
        }
        if c == '{' {
            return None;
        }
        inner.push(c);
    }
    None
}

fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "${{env:{name}}}: an environment variable name is letters, digits and '_', not starting with a digit"
        ))
    }
}

fn variable(var: &str, w: &Window) -> String {
    match var {
        "start" => w.start_text(),
        "end" => w.end_text(),
        "ds" => w.ds(),
        "start_unix" => w.start.timestamp().to_string(),
        "end_unix" => w.end.timestamp().to_string(),
        "start_ms" => w.start.timestamp_millis().to_string(),
        "end_ms" => w.end.timestamp_millis().to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window::parse("2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z").unwrap()
    }

    fn env(name: &str) -> Option<String> {
        (name == "API_TOKEN").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn renders_window_variables_and_env_values() {
        let t = Template::parse(
            "https://api.example.com/v1/orders?from={start}&to={end}&day={ds}&t={start_unix}-{end_ms}",
        )
        .unwrap();
        let r = t.render(&window(), &env).unwrap();
        assert_eq!(
            r.text,
            "https://api.example.com/v1/orders?from=2026-12-06T00:00:00Z&to=2026-12-07T00:00:00Z&day=2026-12-06&t=1796515200-1796601600000"
        );
        assert_eq!(r.shown, r.text);
        let h = Template::parse("Bearer ${env:API_TOKEN}").unwrap();
        assert_eq!(h.env_names().collect::<Vec<_>>(), ["API_TOKEN"]);
        let r = h.render(&window(), &env).unwrap();
        assert_eq!(r.text, "Bearer s3cr3t");
        assert_eq!(r.shown, "Bearer ***");
        assert_eq!(r.to_string(), "Bearer ***");
        let braces = Template::parse("{{\"day\": \"{ds}\"}}").unwrap();
        assert_eq!(
            braces.render(&window(), &env).unwrap().text,
            "{\"day\": \"2026-12-06\"}"
        );
    }

    #[test]
    fn a_missing_env_variable_is_named() {
        let t = Template::parse("Bearer ${env:NOT_SET}").unwrap();
        assert_eq!(
            t.render(&window(), &env).unwrap_err(),
            MissingEnv("NOT_SET".into())
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (text, wanted) in [
            (
                "/x?d={day}",
                "{day} is not a window variable (use {start}, {end}, {ds}",
            ),
            ("/x?d={ds", "is not closed"),
            ("/x?d=ds}", "closes nothing"),
            ("Bearer ${API_TOKEN}", "only ${env:NAME} is supported"),
            ("Bearer ${env:}", "an environment variable name"),
            ("Bearer ${env:1X}", "not starting with a digit"),
            ("Bearer ${env:A", "is not closed"),
        ] {
            let err = Template::parse(text).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
