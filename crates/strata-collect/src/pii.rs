//! PII hashing (`[collector.pii]`, ADR 0029): before an event is appended to the bus, the
//! values at the app's configured paths are replaced by `hmac:<hex>` (see
//! [`strata_core::apps::pii`]). That covers the JSON text of `traits`, `properties` and `context`
//! (any depth), the id columns, the columns flattened from `context` (`context.userAgent`,
//! `context.page.url`, …, and `context.ip`, which also hashes the request's IP) and the raw text
//! of rejected events, so no raw value reaches the bus or the lake.
//!
//! An app without paths costs one map lookup per request: its events keep borrowing the request.
//! The JSON rewrite keeps the text as sent except for the hashed values (keys keep their order;
//! a key given twice is hashed both times); text that cannot contain a configured key (checked
//! without parsing) is not touched.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use strata_core::apps::pii::{PiiConfig, PiiKey, PiiPath};
use strata_core::EventView;

use crate::error::{Error, Result};

/// What stands for the raw text of a rejected event that is not a JSON object, from an app with
/// PII paths: it cannot be searched for the paths, so it is not kept.
pub const WITHHELD: &str =
    "<withheld: not a JSON object, and this app hashes PII fields before they are stored>";

/// The hashing key and each app's paths, compiled.
pub struct Pii {
    key: PiiKey,
    /// For apps without their own paths (None: the global list is empty).
    default: Option<Arc<Rules>>,
    per_app: HashMap<String, Arc<Rules>>,
}

impl Pii {
    /// The PII settings of `config`, or None when no app has a path. A bad path or key is a
    /// setup error (`strata check` reports the same).
    pub fn from_config(config: &PiiConfig, data_dir: &std::path::Path) -> Result<Option<Pii>> {
        Self::from_config_with(config, data_dir, &|k| std::env::var(k).ok())
    }

    /// [`Pii::from_config`] reading the environment through `env`.
    pub fn from_config_with(
        config: &PiiConfig,
        data_dir: &std::path::Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Pii>> {
        let setup = |e: strata_core::Error| Error::Setup(e.to_string());
        if !config.is_enabled() {
            return Ok(None);
        }
        config.validate_with(data_dir, env).map_err(setup)?;
        let Some(key) = config.key_with(data_dir, env).map_err(setup)? else {
            return Err(Error::Setup("collector.pii: no key".into()));
        };
        let compile = |app: &str| -> Result<Option<Arc<Rules>>> {
            let paths = config.paths_for(app).map_err(setup)?;
            Ok((!paths.is_empty()).then(|| Arc::new(Rules::new(&paths))))
        };
        // An app name no app has: the global paths alone.
        let default = compile("")?;
        let mut per_app = HashMap::new();
        for app in config.apps.keys() {
            if let Some(rules) = compile(app)? {
                per_app.insert(app.clone(), rules);
            }
        }
        Ok(Some(Pii {
            key,
            default,
            per_app,
        }))
    }

    /// `*` (every app) when global paths exist, then the apps with their own paths.
    pub fn app_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.default.iter().map(|_| "*").collect();
        names.extend(self.per_app.keys().map(String::as_str));
        names.sort_unstable();
        names
    }

    /// What to hash in the events of `app`; None when nothing.
    pub fn for_app(&self, app: &str) -> Option<AppPii<'_>> {
        let rules = self.per_app.get(app).or(self.default.as_ref())?;
        Some(AppPii {
            key: &self.key,
            rules,
        })
    }
}

/// The paths of one app, as a tree over the whole event (`userId`, `traits` → `email`, …).
#[derive(Debug)]
pub struct Rules {
    root: BTreeMap<String, Node>,
    /// Which of [`COLUMNS`] a path covers.
    columns: [bool; COLUMNS.len()],
}

#[derive(Debug)]
enum Node {
    /// Hash this value (all of it, if it is an object or an array).
    Leaf,
    /// Hash some fields inside this object.
    Inner(BTreeMap<String, Node>),
}

/// Event columns that hold a copy of a value from the event's JSON (or, for `context.ip`, the
/// request's address).
const COLUMNS: [&[&str]; 11] = [
    &["userId"],
    &["anonymousId"],
    &["previousId"],
    &["groupId"],
    &["context", "ip"],
    &["context", "userAgent"],
    &["context", "locale"],
    &["context", "timezone"],
    &["context", "app", "version"],
    &["context", "library", "name"],
    &["context", "library", "version"],
];
/// Columns from `context.page`.
const PAGE_COLUMNS: [&[&str]; 3] = [
    &["context", "page", "url"],
    &["context", "page", "path"],
    &["context", "page", "referrer"],
];

impl Rules {
    pub fn new(paths: &[PiiPath]) -> Self {
        let mut root = BTreeMap::new();
        for path in paths {
            insert(&mut root, path.segments());
        }
        let mut columns = [false; COLUMNS.len()];
        for (slot, column) in columns.iter_mut().zip(COLUMNS) {
            *slot = covers(&root, column);
        }
        Rules { root, columns }
    }

    fn page_columns(&self) -> [bool; 3] {
        PAGE_COLUMNS.map(|c| covers(&self.root, c))
    }
}

fn insert(map: &mut BTreeMap<String, Node>, segments: &[String]) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        // A leaf covers everything below it.
        map.insert(first.clone(), Node::Leaf);
        return;
    }
    let node = map
        .entry(first.clone())
        .or_insert_with(|| Node::Inner(BTreeMap::new()));
    if let Node::Inner(children) = node {
        insert(children, rest);
    }
}

/// Whether the value at `path` is hashed whole (a leaf at or above it).
fn covers(map: &BTreeMap<String, Node>, path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match map.get(*first) {
        None => false,
        Some(Node::Leaf) => true,
        Some(Node::Inner(children)) => covers(children, rest),
    }
}

/// The key and the rules for the events of one request.
#[derive(Clone, Copy)]
pub struct AppPii<'a> {
    key: &'a PiiKey,
    rules: &'a Rules,
}

impl<'a> AppPii<'a> {
    #[cfg(test)]
    pub fn new(key: &'a PiiKey, rules: &'a Rules) -> Self {
        Self { key, rules }
    }

    /// Hashes the configured values of an accepted event, after enrichment (so the geo lookup
    /// and the user-agent parse saw the raw values) and before it is encoded.
    pub fn apply(&self, event: &mut EventView<'_>) {
        let rules = self.rules;
        let key = self.key;
        let page = rules.page_columns();
        let columns = [
            &mut event.user_id,
            &mut event.anonymous_id,
            &mut event.previous_id,
            &mut event.group_id,
            &mut event.ip,
            &mut event.user_agent,
            &mut event.locale,
            &mut event.timezone,
            &mut event.app_version,
            &mut event.library_name,
            &mut event.library_version,
        ];
        for (column, hashed) in columns.into_iter().zip(rules.columns) {
            if hashed {
                hash_column(key, column);
            }
        }
        let page_columns = [
            &mut event.page_url,
            &mut event.page_path,
            &mut event.referrer,
        ];
        for (column, hashed) in page_columns.into_iter().zip(page) {
            if hashed {
                hash_column(key, column);
            }
        }
        for (name, text) in [
            ("traits", &mut event.traits),
            ("properties", &mut event.properties),
            ("context", &mut event.context),
        ] {
            let (Some(node), Some(json)) = (rules.root.get(name), text.as_deref()) else {
                continue;
            };
            if let Some(rewritten) = rewrite_value(json, node, key) {
                *text = Some(Cow::Owned(rewritten));
            }
        }
    }

    /// The raw text of a rejected event with the configured values hashed; [`WITHHELD`] when
    /// it is not a JSON object.
    pub fn raw<'r>(&self, raw: &'r str) -> Cow<'r, str> {
        match rewrite_object(raw, &self.rules.root, self.key, false) {
            Ok(Some(rewritten)) => Cow::Owned(rewritten),
            Ok(None) => Cow::Borrowed(raw),
            Err(NotAnObject) => Cow::Borrowed(WITHHELD),
        }
    }
}

fn hash_column(key: &PiiKey, column: &mut Option<Cow<'_, str>>) {
    if let Some(value) = column.as_deref() {
        if let Cow::Owned(hashed) = key.hash_once(value) {
            *column = Some(Cow::Owned(hashed));
        }
    }
}

/// The JSON text `json` with what `node` names hashed; None when nothing changed.
fn rewrite_value(json: &str, node: &Node, key: &PiiKey) -> Option<String> {
    match node {
        Node::Leaf => hash_all(json, key),
        Node::Inner(children) => rewrite_object(json, children, key, true).ok().flatten(),
    }
}

#[derive(Debug)]
struct NotAnObject;

/// Rewrites the object `json`, hashing the fields `children` names. With `skim`, text that
/// cannot hold any of those keys is not parsed at all.
fn rewrite_object(
    json: &str,
    children: &BTreeMap<String, Node>,
    key: &PiiKey,
    skim: bool,
) -> std::result::Result<Option<String>, NotAnObject> {
    // Without a backslash every key appears verbatim, quoted: if none of ours does, no field
    // can match.
    if skim && !json.contains('\\') && !children.keys().any(|k| contains_quoted(json, k)) {
        return Ok(None);
    }
    let Ok(Entries(entries)) = serde_json::from_str::<Entries<'_>>(json) else {
        return Err(NotAnObject);
    };
    let mut changes: Vec<(usize, String)> = Vec::new();
    for (i, (name, value)) in entries.iter().enumerate() {
        if let Some(new) = children
            .get(&**name)
            .and_then(|node| rewrite_value(value.get(), node, key))
        {
            changes.push((i, new));
        }
    }
    if changes.is_empty() {
        return Ok(None);
    }
    if let Some(out) = splice(json, &entries, &changes) {
        return Ok(Some(out));
    }
    // Values that are not slices of `json` (serde_json never does this): write it anew.
    let mut out = String::with_capacity(json.len() + 64);
    out.push('{');
    let mut next = changes.iter().peekable();
    for (i, (name, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, name);
        out.push(':');
        match next.next_if(|(at, _)| *at == i) {
            Some((_, new)) => out.push_str(new),
            None => out.push_str(value.get()),
        }
    }
    out.push('}');
    Ok(Some(out))
}

/// `json` with the values `changes` names (by entry index, in order) replaced, everything else
/// copied byte for byte. None if a value is not a slice of `json`.
fn splice(
    json: &str,
    entries: &[(Cow<'_, str>, &RawValue)],
    changes: &[(usize, String)],
) -> Option<String> {
    let base = json.as_ptr() as usize;
    let mut out = String::with_capacity(json.len() + 80 * changes.len());
    let mut copied = 0;
    for (i, new) in changes {
        let old = entries.get(*i)?.1.get();
        let start = (old.as_ptr() as usize).checked_sub(base)?;
        out.push_str(json.get(copied..start)?);
        out.push_str(new);
        copied = start + old.len();
    }
    out.push_str(json.get(copied..)?);
    Some(out)
}

/// Whether `"key"` occurs in `json`.
fn contains_quoted(json: &str, key: &str) -> bool {
    let bytes = json.as_bytes();
    json.match_indices(key).any(|(at, _)| {
        at.checked_sub(1).and_then(|b| bytes.get(b)) == Some(&b'"')
            && bytes.get(at + key.len()) == Some(&b'"')
    })
}

/// Every string, number and boolean in the JSON value `json` hashed (nulls kept, structure
/// kept); None when nothing changed.
fn hash_all(json: &str, key: &PiiKey) -> Option<String> {
    let json = json.trim();
    let hashed = |text: &str| Some(format!("\"{}\"", key.hash_once(text)));
    match json.as_bytes().first()? {
        b'n' => None,
        b't' | b'f' => hashed(json),
        b'"' => {
            let s: Cow<'_, str> = serde_json::from_str::<Text<'_>>(json).ok()?.0;
            if strata_core::apps::pii::is_hash(&s) {
                return None;
            }
            hashed(&s)
        }
        b'{' => {
            let Entries(entries) = serde_json::from_str(json).ok()?;
            let mut out = String::with_capacity(json.len() * 2);
            out.push('{');
            for (i, (name, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&mut out, name);
                out.push(':');
                out.push_str(&hash_all(value.get(), key).unwrap_or_else(|| value.get().into()));
            }
            out.push('}');
            Some(out)
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(json).ok()?;
            let mut out = String::with_capacity(json.len() * 2);
            out.push('[');
            for (i, value) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&hash_all(value.get(), key).unwrap_or_else(|| value.get().into()));
            }
            out.push(']');
            Some(out)
        }
        // A number: its text as sent.
        _ => hashed(json),
    }
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a str into JSON cannot fail.
    if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object's fields in the order sent, each value kept as its text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(256));
                while let Some(name) = map.next_key::<Text<'de>>()? {
                    out.push((name.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
#[path = "pii_tests.rs"]
mod tests;
