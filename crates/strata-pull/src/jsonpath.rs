//! The small JSON path a pull's config uses to find things in a response or a record:
//! `$` (the whole value), `.name`, `['name']` / `["name"]` (names with dots or spaces),
//! `[0]` (an array element, `[-1]` the last). The leading `$` may be left out: `data.items`
//! is `$.data.items`. No wildcards or filters: each path names one value.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(i64),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parses `text`; errors say what is wrong and where.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("an empty JSON path (write $ for the whole value)".to_string());
        }
        let mut rest = trimmed.strip_prefix('$').unwrap_or_else(|| {
            // `data.items`: an implicit `$.`.
            if trimmed.starts_with('[') || trimmed.starts_with('.') {
                trimmed
            } else {
                ""
            }
        });
        let mut steps = Vec::new();
        if !trimmed.starts_with('$') && !trimmed.starts_with('[') && !trimmed.starts_with('.') {
            let (key, after) = split_key(trimmed);
            steps.push(Step::Key(key.to_string()));
            rest = after;
        }
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let (key, after) = split_key(after);
                if key.is_empty() {
                    return Err(format!("{text:?}: a '.' must be followed by a name"));
                }
                steps.push(Step::Key(key.to_string()));
                rest = after;
            } else if let Some(after) = rest.strip_prefix('[') {
                let close = after
                    .find(']')
                    .ok_or_else(|| format!("{text:?}: '[' is not closed by ']'"))?;
                let inner = after[..close].trim();
                rest = &after[close + 1..];
                let quoted = ['\'', '"']
                    .iter()
                    .find(|q| inner.len() >= 2 && inner.starts_with(**q) && inner.ends_with(**q));
                if quoted.is_some() {
                    steps.push(Step::Key(inner[1..inner.len() - 1].to_string()));
                } else {
                    let index = inner.parse::<i64>().map_err(|_| {
                        format!(
                            "{text:?}: [{inner}] is neither an index ([0], [-1]) nor a quoted name (['a.b'])"
                        )
                    })?;
                    steps.push(Step::Index(index));
                }
            } else {
                return Err(format!("{text:?}: expected '.name' or '[…]' at {rest:?}"));
            }
        }
        Ok(JsonPath {
            text: trimmed.to_string(),
            steps,
        })
    }

    /// `$`: the whole value.
    pub fn root() -> JsonPath {
        JsonPath {
            text: "$".to_string(),
            steps: Vec::new(),
        }
    }

    /// The value the path names in `value`, `None` when a step finds nothing.
    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        let mut at = value;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Key(k), Value::Object(map)) => map.get(k)?,
                (Step::Index(i), Value::Array(items)) => {
                    let len = items.len() as i64;
                    let i = if *i < 0 { len + i } else { *i };
                    items.get(usize::try_from(i).ok()?)?
                }
                _ => return None,
            };
        }
        Some(at)
    }

    /// Takes the value out of `value` (no copy), `None` when a step finds nothing.
    pub fn take(&self, value: &mut Value) -> Option<Value> {
        let mut at = value;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Key(k), Value::Object(map)) => map.get_mut(k)?,
                (Step::Index(i), Value::Array(items)) => {
                    let len = items.len() as i64;
                    let i = if *i < 0 { len + i } else { *i };
                    items.get_mut(usize::try_from(i).ok()?)?
                }
                _ => return None,
            };
        }
        Some(at.take())
    }
}

/// A name up to the next `.` or `[`.
fn split_key(text: &str) -> (&str, &str) {
    let end = text.find(['.', '[']).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(path: &str, v: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap().get(v).cloned()
    }

    #[test]
    fn paths_find_values() {
        let body = json!({
            "data": {"items": [{"id": 1}, {"id": 2, "tags": ["a", "b"]}]},
            "meta": {"next.cursor": "c2", "next": null},
            "count": 2
        });
        assert_eq!(get("$", &body), Some(body.clone()));
        assert_eq!(get("$.count", &body), Some(json!(2)));
        assert_eq!(get("count", &body), Some(json!(2)));
        assert_eq!(get("data.items[1].id", &body), Some(json!(2)));
        assert_eq!(get("$.data.items[-1].tags[0]", &body), Some(json!("a")));
        assert_eq!(get("$['meta']['next.cursor']", &body), Some(json!("c2")));
        assert_eq!(get("$.meta[\"next.cursor\"]", &body), Some(json!("c2")));
        assert_eq!(get("$.meta.next", &body), Some(Value::Null));
        // Nothing there: None, not an error.
        assert_eq!(get("$.meta.absent", &body), None);
        assert_eq!(get("$.data.items[5]", &body), None);
        assert_eq!(get("$.count.x", &body), None);
        assert_eq!(get("$.data.items[-3]", &body), None);
        let array = json!([{"id": 1}]);
        assert_eq!(get("$[0].id", &array), Some(json!(1)));
        assert_eq!(get("[0].id", &array), Some(json!(1)));
    }

    #[test]
    fn take_moves_the_value_out() {
        let mut body = json!({"data": [1, 2, 3], "next": "x"});
        let records = JsonPath::parse("$.data").unwrap().take(&mut body);
        assert_eq!(records, Some(json!([1, 2, 3])));
        assert_eq!(body, json!({"data": null, "next": "x"}));
    }

    #[test]
    fn bad_paths_say_why() {
        for (text, wanted) in [
            ("", "empty JSON path"),
            ("$.", "must be followed by a name"),
            ("$.a[", "not closed"),
            ("$.a[x]", "neither an index"),
            ("$a", "expected '.name' or '[…]'"),
        ] {
            let err = JsonPath::parse(text).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
