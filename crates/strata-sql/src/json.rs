//! JSON functions for the JSON-text columns (`properties`, `traits`, `context` of
//! `ods.ods_event`): `json_get_str(json, 'path')`, `json_get_int`, `json_get_float`,
//! `json_get_bool`. The path is a key or a dotted key path (`'device.model'`). A missing key,
//! a value of another type, or text that is not JSON gives NULL.
//!
//! The document is not built into a tree: a validating scan over the text finds the byte
//! span of the value at the path, and only that span is converted. The functions take any
//! string type (Parquet columns arrive as `Utf8View`) without a cast, and a constant path is
//! used as is. `dwd_user_action` calls them seven times per event, which made a parse into
//! `serde_json::Value` per call the largest cost of the whole reference DAG.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Nesting deeper than this is treated as not JSON (serde_json's limit too).
const MAX_DEPTH: usize = 128;

/// The text is not JSON.
struct Invalid;

/// A validating scanner over one JSON document's bytes.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), Invalid> {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// A string starting at the cursor; returns whether it has escapes.
    fn string(&mut self) -> Result<bool, Invalid> {
        self.eat(b'"')?;
        let mut escaped = false;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                0..=0x1f => return Err(Invalid),
                _ => self.i += 1,
            }
        }
        Err(Invalid)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Invalid> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn number(&mut self) -> Result<(), Invalid> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        if !self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            return Err(Invalid);
        }
        while self
            .b
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            self.i += 1;
        }
        // Loose on the grammar inside the span; the conversions parse it strictly.
        if self.i > start {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_DEPTH {
            return Err(Invalid);
        }
        match self.b.get(self.i) {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.members(depth, |_, _, _| {}),
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Invalid),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => self.number(),
            None => Err(Invalid),
        }
    }

    /// An object at the cursor; `member(key, key_escaped, value)` sees each member's spans.
    fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&'a str, bool, &'a str),
    ) -> Result<(), Invalid> {
        self.eat(b'{')?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let k = self.i;
            let escaped = self.string()?;
            let key = span(self.b, k + 1, self.i - 1)?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let v = self.i;
            self.value(depth + 1)?;
            member(key, escaped, span(self.b, v, self.i)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Invalid),
            }
        }
    }
}

fn span(b: &[u8], from: usize, to: usize) -> Result<&str, Invalid> {
    // Spans start and end at ASCII delimiters of valid UTF-8 text, so this never fails.
    std::str::from_utf8(&b[from..to]).map_err(|_| Invalid)
}

/// The span of member `key` of the object `doc` (the last one, as parsers keep), `Ok(None)`
/// when `doc` is JSON but not an object or has no such member.
fn member<'a>(doc: &'a str, key: &str) -> Result<Option<&'a str>, Invalid> {
    let mut scan = Scan {
        b: doc.as_bytes(),
        i: 0,
    };
    scan.ws();
    let mut found = None;
    if scan.b.get(scan.i) == Some(&b'{') {
        scan.members(0, |k, escaped, v| {
            let same = if escaped {
                unescape(&format!("\"{k}\"")).is_some_and(|k| k == key)
            } else {
                k == key
            };
            if same {
                found = Some(v);
            }
        })?;
    } else {
        scan.value(0)?;
    }
    scan.ws();
    if scan.i == scan.b.len() {
        Ok(found)
    } else {
        Err(Invalid)
    }
}

/// The span of the value at `path`: the member named `path` itself, else the dotted walk.
fn lookup<'a>(doc: &'a str, path: &str) -> Option<&'a str> {
    match member(doc, path) {
        Err(Invalid) => None,
        Ok(Some(v)) => Some(v),
        Ok(None) if path.contains('.') => path
            .split('.')
            .try_fold(doc, |d, key| member(d, key).ok().flatten()),
        Ok(None) => None,
    }
}

/// The text of a JSON string span (quotes included).
fn unescape(span: &str) -> Option<Cow<'_, str>> {
    let inner = span.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(span).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// A string span's text, if it is one.
fn as_text(span: &str) -> Option<Cow<'_, str>> {
    span.starts_with('"').then(|| unescape(span)).flatten()
}

fn as_i64(span: &str) -> Option<i64> {
    if let Some(text) = as_text(span) {
        return text.parse().ok();
    }
    span.parse::<i64>().ok().or_else(|| {
        span.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.fract() == 0.0)
            .map(|f| f as i64)
    })
}

fn as_f64(span: &str) -> Option<f64> {
    match as_text(span) {
        Some(text) => text.parse().ok(),
        None => span.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

/// Row values of a string argument (any string type) or a scalar repeated.
enum Texts<'a> {
    Rows(Vec<Option<&'a str>>),
    Same(Option<&'a str>),
}

impl<'a> Texts<'a> {
    fn of(arg: &'a ColumnarValue) -> Result<Texts<'a>, DataFusionError> {
        Ok(match arg {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(s) | ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s),
            ) => Texts::Same(s.as_deref()),
            ColumnarValue::Scalar(ScalarValue::Null) => Texts::Same(None),
            ColumnarValue::Array(a) => Texts::Rows(match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().iter().collect(),
                DataType::LargeUtf8 => a.as_string::<i64>().iter().collect(),
                DataType::Utf8View => a.as_string_view().iter().collect(),
                DataType::Null => vec![None; a.len()],
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "json_get_*: expected text, got {other}"
                    )))
                }
            }),
            other => {
                return Err(DataFusionError::Plan(format!(
                    "json_get_*: expected text, got {}",
                    other.data_type()
                )))
            }
        })
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Texts::Rows(r) => r[i],
            Texts::Same(s) => *s,
        }
    }
}

/// Applies `f` to the span found for each (json, path) row.
fn each(args: &[ColumnarValue], mut f: impl FnMut(Option<&str>)) -> Result<(), DataFusionError> {
    let [json, path] = args else {
        return Err(DataFusionError::Plan(
            "json_get_*(json, path) takes two arguments".into(),
        ));
    };
    let rows = args
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let (json, path) = (Texts::of(json)?, Texts::of(path)?);
    for i in 0..rows {
        f(match (json.get(i), path.get(i)) {
            (Some(doc), Some(path)) => lookup(doc, path),
            _ => None,
        });
    }
    Ok(())
}

fn udf(
    name: &str,
    ret: DataType,
    fun: impl Fn(&[ColumnarValue]) -> Result<ArrayRef, DataFusionError> + Send + Sync + 'static,
) -> ScalarUDF {
    let text = [DataType::Utf8, DataType::Utf8View, DataType::LargeUtf8];
    let signatures = text
        .iter()
        .flat_map(|j| {
            text.iter()
                .map(|p| TypeSignature::Exact(vec![j.clone(), p.clone()]))
        })
        .collect();
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        Signature::one_of(signatures, Volatility::Immutable),
        ret,
        Arc::new(move |args| Ok(ColumnarValue::Array(fun(args)?))),
    ))
}

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(udf("json_get_str", DataType::Utf8, |args| {
        let mut b = StringBuilder::new();
        each(args, |v| match v {
            None | Some("null") => b.append_null(),
            Some(v) => match as_text(v) {
                Some(text) => b.append_value(text),
                // Numbers, booleans, objects and arrays: their compact JSON text.
                None => match serde_json::from_str::<serde_json::Value>(v) {
                    Ok(value) => b.append_value(value.to_string()),
                    Err(_) => b.append_null(),
                },
            },
        })?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_int", DataType::Int64, |args| {
        let mut b = Int64Builder::new();
        each(args, |v| b.append_option(v.and_then(as_i64)))?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_float", DataType::Float64, |args| {
        let mut b = Float64Builder::new();
        each(args, |v| b.append_option(v.and_then(as_f64)))?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_bool", DataType::Boolean, |args| {
        let mut b = BooleanBuilder::new();
        each(args, |v| {
            b.append_option(match v {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            })
        })?;
        Ok(Arc::new(b.finish()))
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_key_and_dotted_path() {
        let doc = r#" {"a": 1, "b": {"c": "x\"y", "d": [1, {"e": 2}]}, "f.g": true, "a": 7} "#;
        assert_eq!(lookup(doc, "a"), Some("7"), "the last duplicate wins");
        assert_eq!(
            lookup(doc, "b.c").and_then(as_text).as_deref(),
            Some("x\"y")
        );
        assert_eq!(lookup(doc, "b.d"), Some(r#"[1, {"e": 2}]"#));
        assert_eq!(
            lookup(doc, "f.g"),
            Some("true"),
            "a dotted key itself first"
        );
        assert_eq!(lookup(doc, "b.x"), None);
        assert_eq!(lookup(doc, "b.d.e"), None, "arrays are not walked");
        assert_eq!(lookup(r#"{"k\u0061": 5}"#, "ka"), Some("5"), "escaped keys");
    }

    #[test]
    fn text_that_is_not_json_finds_nothing() {
        for bad in [
            "not json",
            r#"{"a": 1"#,
            r#"{"a": 1} x"#,
            r#"{"a": tru}"#,
            r#"{"a": [1, 2}"#,
            "{\"a\": \"line\nbreak\"}",
            r#"{"a" 1}"#,
            "",
        ] {
            assert_eq!(lookup(bad, "a"), None, "{bad:?}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(lookup(&format!(r#"{{"a": {deep}}}"#), "a"), None);
        assert_eq!(lookup("[1, 2]", "a"), None, "not an object");
    }

    #[test]
    fn numbers_convert_like_the_json_types_they_are() {
        assert_eq!(as_i64("42"), Some(42));
        assert_eq!(as_i64("-3.0"), Some(-3));
        assert_eq!(as_i64("3.5"), None);
        assert_eq!(as_i64("\"17\""), Some(17));
        assert_eq!(as_i64("true"), None);
        assert_eq!(as_f64("1.5e2"), Some(150.0));
        assert_eq!(as_f64("\"2.5\""), Some(2.5));
        assert_eq!(as_f64("null"), None);
    }
}
