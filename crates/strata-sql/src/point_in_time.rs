//! `point_in_time(…)`: point-in-time correct joins of a feature table onto a label table
//! (what Feast calls `get_historical_features`), so a training sample never sees a feature
//! value from after its label's time.
//!
//! ```sql
//! SELECT * FROM point_in_time(
//!   'ads.ads_sample_ctr',      -- label table (namespace.table), or a query text
//!   'sample_ts',               -- the label's time: TIMESTAMP or DATE
//!   'ads.ads_user_features',   -- feature table (namespace.table), or a query text
//!   'user_id',                 -- entity key column(s), 'user_id' or 'user_id,post_id'
//!   'dt',                      -- the feature table's time: TIMESTAMP or DATE
//!   '2 days',                  -- optional ttl ('' for none)
//!   'u_'                       -- optional prefix of the feature columns
//! )
//! ```
//!
//! # Semantics
//!
//! - Every label row appears exactly once (a left join): no label row is dropped or repeated.
//! - Its feature columns come from the feature row with the same key (equal values in every
//!   key column; a NULL key matches nothing) whose *availability time* is the latest one at or
//!   before the label time. A TIMESTAMP feature time is available at that instant. A DATE `d`
//!   describes the whole day, so it is available at `d + 1 day` 00:00 UTC: a label on day `D`
//!   (or at any instant of day `D`) joins the row of `D - 1` at the latest, never the row of
//!   `D`. A DATE label time is the instant `D` 00:00 UTC.
//! - With a ttl, a feature row whose availability is more than ttl before the label time is
//!   not used, so the label row gets NULL features (age == ttl is still used).
//! - No matching row: the feature columns are NULL.
//! - Output: every label column as it is, then the feature table's columns except its key
//!   and time columns, named `<prefix><column>` (a name already taken becomes
//!   `<feature table>__<column>`, `features__<column>` for a query text), then
//!   `<prefix>feature_ts` (without a prefix: `__feature_ts`, renamed the same way when taken),
//!   the availability time of the row used (NULL when none), a TIMESTAMP.
//! - Several feature rows with one key and one availability time (a duplicate in the feature
//!   table): one of them is used, which one is not defined.
//!
//! # How it runs
//!
//! DataFusion's table functions are synchronous, but reading a lake table's schema is not, so
//! [`SqlSession`] prepares every `point_in_time(…)` of a statement before planning it: it
//! reads both tables' schemas, checks the arguments, plans a generated join (a left join on
//! the keys and `availability <= label time`, then the latest match per label row through
//! `QUALIFY row_number() … = 1`) and hands the view to the registered function under a
//! one-statement id. Statements of `strata sql` and warehouse models all go through that path.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::catalog::TableFunctionImpl;
use datafusion::common::{plan_err, ScalarValue};
use datafusion::datasource::{TableProvider, ViewTable};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, ObjectName, TableFactor, TableFunctionArgs,
    Value, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::SqlSession;
use strata_table::dialect::TimeTravelDialect;
use strata_table::error::{Error, Result};

/// The function's name in SQL.
pub const NAME: &str = "point_in_time";

/// Column names the generated SQL uses for itself; a label table may not have them.
const ROW_COLUMN: &str = "__pit_n";
const AT_COLUMN: &str = "__pit_at";

/// The registered table function: hands out the views [`SqlSession`] prepared for the
/// statement being planned.
#[derive(Debug, Default)]
pub struct PointInTime {
    prepared: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl PointInTime {
    fn insert(&self, id: String, view: Arc<dyn TableProvider>) {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, view);
    }

    fn remove(&self, id: &str) {
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

impl TableFunctionImpl for PointInTime {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        if let [Expr::Literal(ScalarValue::Utf8(Some(id)), _)] = args {
            let prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(view) = prepared.get(id) {
                return Ok(view.clone());
            }
        }
        plan_err!(
            "{NAME}(…) is prepared by Strata's SQL session (strata sql, warehouse models) before \
             a statement is planned; it cannot run through a bare DataFusion context"
        )
    }
}

/// Removes a statement's prepared views once it is planned (or failed).
pub(crate) struct Prepared {
    function: Arc<PointInTime>,
    ids: Vec<String>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for id in &self.ids {
            self.function.remove(id);
        }
    }
}

/// A table or a query, as given in an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The name as SQL (quoted where needed) and its last part (for renamed columns).
    Table {
        sql: String,
        short: String,
    },
    Query(String),
}

impl Source {
    fn parse(role: &str, text: &str) -> Result<Source> {
        let trimmed = text.trim();
        let first = trimmed
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if trimmed.starts_with('(') || matches!(first.as_str(), "select" | "with" | "values") {
            return Ok(Source::Query(trimmed.to_string()));
        }
        let bad = |why: String| {
            Error::Invalid(format!(
                "{NAME}: the {role} {text:?} is neither a table name (namespace.table) nor a \
                 query: {why}"
            ))
        };
        let mut parser = Parser::new(&TimeTravelDialect)
            .try_with_sql(trimmed)
            .map_err(|e| bad(e.to_string()))?;
        let name = parser
            .parse_object_name(false)
            .map_err(|e| bad(e.to_string()))?;
        if parser.peek_token().token != Token::EOF {
            return Err(bad("unexpected text after the name".to_string()));
        }
        let short = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(strata_table::dialect::normalize)
            .ok_or_else(|| bad("no table name".to_string()))?;
        Ok(Source::Table {
            sql: name.to_string(),
            short,
        })
    }

    fn relation(&self) -> String {
        match self {
            Source::Table { sql, .. } => sql.clone(),
            Source::Query(q) => format!("({q}) AS __pit_src"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Table { sql, .. } => sql.clone(),
            Source::Query(q) => format!("query {q:?}"),
        }
    }

    fn short(&self) -> &str {
        match self {
            Source::Table { short, .. } => short,
            Source::Query(_) => "features",
        }
    }
}

/// The function's arguments, read but not yet checked against the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    label: Source,
    label_ts: String,
    features: Source,
    keys: Vec<String>,
    feature_ts: String,
    ttl_micros: Option<i64>,
    prefix: String,
}

impl Call {
    fn parse(args: &[String]) -> Result<Call> {
        if !(5..=7).contains(&args.len()) {
            return Err(Error::Invalid(format!(
                "{NAME} takes 5 to 7 arguments (label table, label time column, feature table, \
                 key column(s), feature time column[, ttl[, prefix]]), got {}",
                args.len()
            )));
        }
        let column = |i: usize, what: &str| -> Result<String> {
            let c = args[i].trim();
            if c.is_empty() {
                return Err(Error::Invalid(format!("{NAME}: the {what} is empty")));
            }
            Ok(c.to_string())
        };
        let keys: Vec<String> = args[3].split(',').map(|k| k.trim().to_string()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(Error::Invalid(format!(
                "{NAME}: key columns {:?} must be one name or names separated by commas",
                args[3]
            )));
        }
        if let Some(dup) = keys
            .iter()
            .enumerate()
            .find(|(i, k)| keys[..*i].contains(k))
        {
            return Err(Error::Invalid(format!(
                "{NAME}: key column {} is given twice",
                dup.1
            )));
        }
        let ttl_micros = match args.get(5).map(|t| t.trim()) {
            None | Some("") => None,
            Some(t) => Some(parse_ttl(t)?),
        };
        Ok(Call {
            label: Source::parse("label table", &args[0])?,
            label_ts: column(1, "label time column")?,
            features: Source::parse("feature table", &args[2])?,
            keys,
            feature_ts: column(4, "feature time column")?,
            ttl_micros,
            prefix: args.get(6).cloned().unwrap_or_default(),
        })
    }
}

/// A ttl such as `2 days`, `36 hours`, `1 day 12 hours` or `90 minutes`, in microseconds.
fn parse_ttl(text: &str) -> Result<i64> {
    let bad = |why: &str| {
        Error::Invalid(format!(
            "{NAME}: bad ttl {text:?}: {why} (write e.g. '2 days', '36 hours', '1 day 12 hours'; \
             units: weeks, days, hours, minutes, seconds, milliseconds, microseconds)"
        ))
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(bad("expected pairs of a number and a unit"));
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let n: i64 = pair[0]
            .parse()
            .map_err(|_| bad(&format!("{:?} is not a whole number", pair[0])))?;
        if n < 0 {
            return Err(bad("negative"));
        }
        let unit: i64 = match pair[1].to_ascii_lowercase().as_str() {
            "week" | "weeks" | "w" => 7 * 86_400_000_000,
            "day" | "days" | "d" => 86_400_000_000,
            "hour" | "hours" | "h" => 3_600_000_000,
            "minute" | "minutes" | "min" | "mins" | "m" => 60_000_000,
            "second" | "seconds" | "sec" | "secs" | "s" => 1_000_000,
            "millisecond" | "milliseconds" | "ms" => 1_000,
            "microsecond" | "microseconds" | "us" => 1,
            "month" | "months" | "year" | "years" => {
                return Err(bad("months and years have no fixed length; use days"));
            }
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too long"))?;
    }
    if total == 0 {
        return Err(bad("must be longer than zero"));
    }
    Ok(total)
}

/// `"name"` with inner quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Broad type families whose values compare as join keys.
fn key_family(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Some("number"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some("string"),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Some("binary"),
        DataType::Boolean => Some("boolean"),
        DataType::Date32 | DataType::Date64 => Some("date"),
        DataType::Timestamp(_, _) => Some("timestamp"),
        _ => None,
    }
}

/// A time column as a UTC timestamp in microseconds without a zone (so label and feature
/// times compare whatever their units and zones). `None`: not a time type.
fn as_instant(expr: &str, t: &DataType) -> Option<String> {
    const MICROS: &str = "'Timestamp(Microsecond, None)'";
    match t {
        DataType::Timestamp(TimeUnit::Microsecond, None) => Some(expr.to_string()),
        DataType::Timestamp(_, Some(_)) => Some(format!(
            "arrow_cast(arrow_cast({expr}, 'Timestamp(Microsecond, Some(\"UTC\"))'), {MICROS})"
        )),
        DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64 => {
            Some(format!("arrow_cast({expr}, {MICROS})"))
        }
        _ => None,
    }
}

fn is_date(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Date64)
}

fn field<'a>(
    schema: &'a Schema,
    name: &str,
    what: &str,
    source: &Source,
) -> Result<&'a arrow::datatypes::Field> {
    schema
        .fields()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| f.as_ref())
        .ok_or_else(|| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::Invalid(format!(
                "{NAME}: {what} {name:?} is not a column of {} (columns: {})",
                source.describe(),
                names.join(", ")
            ))
        })
}

fn no_duplicates(schema: &Schema, source: &Source) -> Result<()> {
    let mut seen = BTreeSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(Error::Invalid(format!(
                "{NAME}: {} has two columns named {:?}; alias one of them",
                source.describe(),
                f.name()
            )));
        }
    }
    Ok(())
}

/// Checks the call against both schemas and writes the join.
fn join_sql(call: &Call, label: &Schema, features: &Schema) -> Result<String> {
    no_duplicates(label, &call.label)?;
    no_duplicates(features, &call.features)?;
    for (schema, source, reserved) in [
        (label, &call.label, ROW_COLUMN),
        (label, &call.label, AT_COLUMN),
        (features, &call.features, AT_COLUMN),
    ] {
        if schema.fields().iter().any(|f| f.name() == reserved) {
            return Err(Error::Invalid(format!(
                "{NAME}: {} has a column named {reserved}, a name {NAME} uses itself; rename it",
                source.describe()
            )));
        }
    }
    let time_type = |f: &arrow::datatypes::Field, what: &str, source: &Source| -> Result<()> {
        if as_instant("x", f.data_type()).is_none() {
            return Err(Error::Invalid(format!(
                "{NAME}: {what} {:?} of {} is {}; it must be a TIMESTAMP or a DATE",
                f.name(),
                source.describe(),
                f.data_type()
            )));
        }
        Ok(())
    };
    let label_ts = field(label, &call.label_ts, "label time column", &call.label)?;
    time_type(label_ts, "label time column", &call.label)?;
    let feature_ts = field(
        features,
        &call.feature_ts,
        "feature time column",
        &call.features,
    )?;
    time_type(feature_ts, "feature time column", &call.features)?;
    if call.keys.contains(&call.feature_ts) {
        return Err(Error::Invalid(format!(
            "{NAME}: {:?} is both a key and the feature time column",
            call.feature_ts
        )));
    }
    for key in &call.keys {
        let l = field(label, key, "key column", &call.label)?;
        let f = field(features, key, "key column", &call.features)?;
        let (lf, ff) = (key_family(l.data_type()), key_family(f.data_type()));
        if lf.is_none() || lf != ff {
            return Err(Error::Invalid(format!(
                "{NAME}: key column {key:?} is {} in {} but {} in {}; keys must be comparable \
                 values of one kind (numbers, strings, dates, …)",
                l.data_type(),
                call.label.describe(),
                f.data_type(),
                call.features.describe()
            )));
        }
    }

    // Output names: the label's columns, then the features', then the availability time.
    let mut taken: BTreeSet<String> = label.fields().iter().map(|f| f.name().clone()).collect();
    // `wanted`, else `<feature table>__<column>`.
    let mut name_for = |wanted: String, column: &str| -> Result<String> {
        let name = if taken.contains(&wanted) {
            format!("{}__{column}", call.features.short())
        } else {
            wanted.clone()
        };
        if !taken.insert(name.clone()) {
            return Err(Error::Invalid(format!(
                "{NAME}: feature column {column:?} would be named {wanted:?} or {name:?}, both \
                 taken by label columns; pass a prefix"
            )));
        }
        Ok(name)
    };
    let feature_columns: Vec<&str> = features
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| *c != call.feature_ts && !call.keys.iter().any(|k| k == c))
        .collect();
    let mut select: Vec<String> = label
        .fields()
        .iter()
        .map(|f| format!("l.{}", quote(f.name())))
        .collect();
    for c in &feature_columns {
        let name = name_for(format!("{}{c}", call.prefix), c)?;
        select.push(format!("f.{} AS {}", quote(c), quote(&name)));
    }
    let ts_name = if call.prefix.is_empty() {
        name_for("__feature_ts".to_string(), "feature_ts")?
    } else {
        name_for(format!("{}feature_ts", call.prefix), "feature_ts")?
    };
    select.push(format!("f.{} AS {}", quote(AT_COLUMN), quote(&ts_name)));

    let label_time = as_instant(
        &format!("l.{}", quote(&call.label_ts)),
        label_ts.data_type(),
    )
    .ok_or_else(|| Error::Internal("label time type checked above".to_string()))?;
    let mut available = as_instant(&quote(&call.feature_ts), feature_ts.data_type())
        .ok_or_else(|| Error::Internal("feature time type checked above".to_string()))?;
    if is_date(feature_ts.data_type()) {
        available = format!("{available} + INTERVAL '1 day'");
    }
    let keys: Vec<String> = call.keys.iter().map(|k| quote(k)).collect();
    let mut on: Vec<String> = keys.iter().map(|k| format!("l.{k} = f.{k}")).collect();
    on.push(format!("f.{} <= {label_time}", quote(AT_COLUMN)));
    if let Some(ttl) = call.ttl_micros {
        on.push(format!(
            "f.{} >= {label_time} - INTERVAL '{ttl} microseconds'",
            quote(AT_COLUMN)
        ));
    }
    let mut label_row: Vec<String> = keys.clone();
    label_row.push(quote(&call.label_ts));
    let mut feature_select = keys.clone();
    feature_select.extend(feature_columns.iter().map(|c| quote(c)));
    feature_select.push(format!("{available} AS {}", quote(AT_COLUMN)));
    let mut pick: Vec<String> = label_row.iter().map(|c| format!("l.{c}")).collect();
    pick.push(format!("l.{}", quote(ROW_COLUMN)));
    let sql = format!(
        "SELECT {select}\n\
         FROM (SELECT *, row_number() OVER (PARTITION BY {label_row}) AS {row} FROM {label}) AS l\n\
         LEFT JOIN (SELECT {feature_select} FROM {features}) AS f\n  ON {on}\n\
         QUALIFY row_number() OVER (PARTITION BY {pick} ORDER BY f.{at} DESC NULLS LAST) = 1",
        select = select.join(", "),
        label_row = label_row.join(", "),
        row = quote(ROW_COLUMN),
        label = call.label.relation(),
        feature_select = feature_select.join(", "),
        features = call.features.relation(),
        on = on.join(" AND "),
        pick = pick.join(", "),
        at = quote(AT_COLUMN),
    );
    Ok(sql)
}

/// The string literals of a `point_in_time(…)` call.
fn literal_args(args: &TableFunctionArgs) -> Result<Vec<String>> {
    args.args
        .iter()
        .enumerate()
        .map(|(i, arg)| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v))) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s.clone()),
                other => Err(Error::Invalid(format!(
                    "{NAME}: argument {} must be a string literal, got {other}",
                    i + 1
                ))),
            },
            other => Err(Error::Invalid(format!(
                "{NAME}: argument {} must be a string literal, got {other}",
                i + 1
            ))),
        })
        .collect()
}

fn is_call(name: &ObjectName) -> bool {
    matches!(name.0.as_slice(), [part] if part.as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(NAME)))
}

/// Finds the calls of a statement, in visiting order.
#[derive(Default)]
struct FindCalls {
    found: Vec<Result<Vec<String>>>,
}

impl VisitorMut for FindCalls {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            if is_call(name) {
                self.found.push(literal_args(args));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Points each call at its prepared view, in the order [`FindCalls`] found them.
struct PointAt {
    ids: Vec<String>,
    next: usize,
}

impl VisitorMut for PointAt {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            if is_call(name) {
                if let Some(id) = self.ids.get(self.next) {
                    *name =
                        ObjectName::from(vec![datafusion::sql::sqlparser::ast::Ident::new(NAME)]);
                    args.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::value(
                        Value::SingleQuotedString(id.clone()),
                    )))];
                    args.settings = None;
                }
                self.next += 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// A table or query a `point_in_time(…)` call reads, for tools that trace what a statement
/// reads (a warehouse model's upstream tables): the call's name is no table, its tables are
/// inside string arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSource {
    /// A table name as written (`ads.ads_user_features`), to resolve like any table name.
    Table(ObjectName),
    /// A query text; the tables it reads are found the same way.
    Query(String),
}

/// Whether a relation name is this function's (`FROM point_in_time(…)` is no table).
pub fn is_point_in_time(name: &ObjectName) -> bool {
    is_call(name)
}

/// The label and feature sources of every `point_in_time(…)` call in `query`, in order; a
/// call whose arguments are not string literals (an error when it runs) reads nothing here.
pub fn sources_read(query: &datafusion::sql::sqlparser::ast::Query) -> Vec<CallSource> {
    use datafusion::sql::sqlparser::ast::{Visit, Visitor};
    struct Sources(Vec<CallSource>);
    impl Visitor for Sources {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = factor
            {
                if let (true, Ok(args)) = (is_call(name), literal_args(args)) {
                    for text in [args.first(), args.get(2)].into_iter().flatten() {
                        match Source::parse("table", text) {
                            Ok(Source::Query(q)) => self.0.push(CallSource::Query(q)),
                            Ok(Source::Table { .. }) => {
                                if let Ok(name) = Parser::new(&TimeTravelDialect)
                                    .try_with_sql(text.trim())
                                    .and_then(|mut p| p.parse_object_name(false))
                                {
                                    self.0.push(CallSource::Table(name));
                                }
                            }
                            Err(_) => {}
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut sources = Sources(Vec::new());
    let _ = query.visit(&mut sources);
    sources.0
}

type PlanFuture<'a> = Pin<Box<dyn Future<Output = Result<LogicalPlan>> + Send + 'a>>;

impl SqlSession {
    /// Prepares every `point_in_time(…)` of `statement` and points the calls at their views;
    /// the views stay available until the returned guard drops (after planning).
    pub(crate) async fn prepare_point_in_time(
        &self,
        statement: &mut DFStatement,
        registered: &mut Vec<String>,
    ) -> Result<Prepared> {
        let mut prepared = Prepared {
            function: self.point_in_time.clone(),
            ids: Vec::new(),
        };
        let mut find = FindCalls::default();
        crate::visit_statement(statement, &mut find);
        if find.found.is_empty() {
            return Ok(prepared);
        }
        for args in find.found {
            let call = Call::parse(&args?)?;
            let label = self.source_schema(&call.label, "label", registered).await?;
            let features = self
                .source_schema(&call.features, "feature", registered)
                .await?;
            let sql = join_sql(&call, &label, &features)?;
            tracing::debug!(sql = %sql, "point_in_time join");
            let logical = self.plan_sql(&sql, registered).await.map_err(|e| {
                Error::Internal(format!("{NAME}: the generated join does not plan: {e}"))
            })?;
            let id = format!(
                "{NAME}#{}",
                self.counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            self.point_in_time
                .insert(id.clone(), Arc::new(ViewTable::new(logical, Some(sql))));
            prepared.ids.push(id);
        }
        let mut point = PointAt {
            ids: prepared.ids.clone(),
            next: 0,
        };
        crate::visit_statement(statement, &mut point);
        Ok(prepared)
    }

    /// The columns of a label or feature source, with a clear error when it does not exist.
    async fn source_schema(
        &self,
        source: &Source,
        role: &str,
        registered: &mut Vec<String>,
    ) -> Result<Schema> {
        if let Source::Table { sql, .. } = source {
            let reference = datafusion::sql::TableReference::parse_str(sql);
            let exists = self.ctx.table_exist(reference).unwrap_or(false);
            if !exists {
                return Err(Error::NotFound(format!("{NAME}: {role} table {sql}")));
            }
        }
        let plan = self
            .plan_sql(&format!("SELECT * FROM {}", source.relation()), registered)
            .await
            .map_err(|e| {
                Error::Invalid(format!(
                    "{NAME}: cannot read the {role} {}: {e}",
                    source.describe()
                ))
            })?;
        Ok(plan.schema().as_arrow().clone())
    }

    /// Plans one query (time travel and nested `point_in_time` included).
    fn plan_sql<'a>(&'a self, sql: &'a str, registered: &'a mut Vec<String>) -> PlanFuture<'a> {
        Box::pin(async move {
            let mut parsed = DFParser::parse_sql_with_dialect(sql, &TimeTravelDialect)
                .map_err(Error::datafusion)?;
            let statement = match (parsed.pop_front(), parsed.is_empty()) {
                (Some(s @ DFStatement::Statement(_)), true) if is_select(&s) => s,
                _ => return Err(Error::Sql("expected exactly one query".to_string())),
            };
            let df = self.dataframe(statement, registered).await?;
            Ok(df.logical_plan().clone())
        })
    }
}

fn is_select(statement: &DFStatement) -> bool {
    matches!(statement, DFStatement::Statement(s)
        if matches!(s.as_ref(), datafusion::sql::sqlparser::ast::Statement::Query(_)))
}

#[cfg(test)]
mod tests;
