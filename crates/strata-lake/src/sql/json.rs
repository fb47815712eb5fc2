//! JSON functions for the JSON-text columns (`properties`, `traits`, `context` of
//! `ods.ods_event`): `json_get_str(json, 'path')`, `json_get_int`, `json_get_float`,
//! `json_get_bool`. The path is a key or a dotted key path (`'device.model'`). A missing key,
//! a value of another type, or text that is not JSON gives NULL.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringArray, StringBuilder,
};
use arrow::datatypes::DataType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;
use serde_json::Value;

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(found) = v.get(path) {
        return Some(found);
    }
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// Applies `f` to each (json, path) pair.
fn each(
    args: &[ColumnarValue],
    mut f: impl FnMut(Option<&Value>),
) -> Result<usize, DataFusionError> {
    let rows = args
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let [json, path] = args else {
        return Err(DataFusionError::Plan(
            "json_get_*(json, path) takes two arguments".into(),
        ));
    };
    let json = json.clone().into_array(rows)?;
    let path = path.clone().into_array(rows)?;
    let cast = |a: &ArrayRef| arrow::compute::cast(a, &DataType::Utf8);
    let (json, path) = (cast(&json)?, cast(&path)?);
    let json = json
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("json argument is not text".into()))?;
    let path = path
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("path argument is not text".into()))?;
    let mut last: Option<(String, Option<Value>)> = None;
    for i in 0..rows {
        if json.is_null(i) || path.is_null(i) {
            f(None);
            continue;
        }
        // Consecutive rows often repeat the document (scalar arguments): parse once.
        let text = json.value(i);
        let parsed = match &last {
            Some((t, v)) if t == text => v.clone(),
            _ => {
                let v = serde_json::from_str::<Value>(text).ok();
                last = Some((text.to_string(), v.clone()));
                v
            }
        };
        f(parsed.as_ref().and_then(|v| lookup(v, path.value(i))));
    }
    Ok(rows)
}

fn udf(
    name: &str,
    ret: DataType,
    fun: impl Fn(&[ColumnarValue]) -> Result<ArrayRef, DataFusionError> + Send + Sync + 'static,
) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8, DataType::Utf8],
        ret,
        Volatility::Immutable,
        Arc::new(move |args| Ok(ColumnarValue::Array(fun(args)?))),
    )
}

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(udf("json_get_str", DataType::Utf8, |args| {
        let mut b = StringBuilder::new();
        each(args, |v| match v {
            Some(Value::String(s)) => b.append_value(s),
            Some(Value::Null) | None => b.append_null(),
            Some(other) => b.append_value(other.to_string()),
        })?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_int", DataType::Int64, |args| {
        let mut b = Int64Builder::new();
        each(args, |v| {
            b.append_option(v.and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }))
        })?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_float", DataType::Float64, |args| {
        let mut b = Float64Builder::new();
        each(args, |v| {
            b.append_option(v.and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }))
        })?;
        Ok(Arc::new(b.finish()))
    }));
    ctx.register_udf(udf("json_get_bool", DataType::Boolean, |args| {
        let mut b = BooleanBuilder::new();
        each(args, |v| b.append_option(v.and_then(Value::as_bool)))?;
        Ok(Arc::new(b.finish()))
    }));
}
