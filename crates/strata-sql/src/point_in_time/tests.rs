use super::*;
use arrow::datatypes::Field;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn ttl_reads_units_and_refuses_the_rest() {
    assert_eq!(parse_ttl("2 days").unwrap(), 2 * 86_400_000_000);
    assert_eq!(parse_ttl("1 day 12 hours").unwrap(), 36 * 3_600_000_000);
    assert_eq!(parse_ttl("90 MINUTES").unwrap(), 90 * 60_000_000);
    assert_eq!(parse_ttl("1 us").unwrap(), 1);
    for bad in [
        "",
        "2",
        "days",
        "2 fortnights",
        "-1 day",
        "0 days",
        "1 month",
        "1.5 days",
    ] {
        let e = parse_ttl(bad).unwrap_err().to_string();
        assert!(e.contains("bad ttl"), "{bad:?}: {e}");
    }
    assert!(parse_ttl("99999999999999 weeks").is_err());
}

#[test]
fn sources_are_names_or_queries() {
    assert_eq!(
        Source::parse("label table", "ads.ads_sample_ctr").unwrap(),
        Source::Table {
            sql: "ads.ads_sample_ctr".to_string(),
            short: "ads_sample_ctr".to_string()
        }
    );
    assert!(matches!(
        Source::parse("label table", " select 1 AS x").unwrap(),
        Source::Query(_)
    ));
    let e = Source::parse("label table", "ads.t; DROP TABLE x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a table name"), "{e}");
}

#[test]
fn calls_check_their_arguments() {
    let ok = Call::parse(&args(&["l", "ts", "f", "a, b", "dt", "", "p_"])).unwrap();
    assert_eq!(ok.keys, ["a", "b"]);
    assert_eq!(ok.ttl_micros, None);
    assert_eq!(ok.prefix, "p_");
    for (bad, want) in [
        (args(&["l", "ts", "f", "k"]), "5 to 7 arguments"),
        (args(&["l", "ts", "f", "a,,b", "dt"]), "key columns"),
        (args(&["l", "ts", "f", "a,a", "dt"]), "given twice"),
        (
            args(&["l", " ", "f", "k", "dt"]),
            "label time column is empty",
        ),
        (args(&["l", "ts", "f", "k", "dt", "soon"]), "bad ttl"),
    ] {
        let e = Call::parse(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
}

fn schema(fields: &[(&str, DataType)]) -> Schema {
    Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn clashing_feature_names_take_the_table_name() {
    let call = Call::parse(&args(&["l", "ts", "ads.uf", "user_id", "dt"])).unwrap();
    let label = schema(&[
        ("user_id", DataType::Int64),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("ctr", DataType::Float64),
    ]);
    let features = schema(&[
        ("user_id", DataType::Int64),
        ("dt", DataType::Date32),
        ("ctr", DataType::Float64),
        ("clicks", DataType::Int64),
    ]);
    let sql = join_sql(&call, &label, &features).unwrap();
    assert!(sql.contains(r#"f."ctr" AS "uf__ctr""#), "{sql}");
    assert!(sql.contains(r#"f."clicks" AS "clicks""#), "{sql}");
    assert!(sql.contains(r#"AS "__feature_ts""#), "{sql}");
    assert!(!sql.contains(r#"f."dt" AS"#), "{sql}");

    let wrong_key = schema(&[
        ("user_id", DataType::Utf8),
        ("dt", DataType::Date32),
        ("ctr", DataType::Float64),
    ]);
    let e = join_sql(&call, &label, &wrong_key).unwrap_err().to_string();
    assert!(e.contains("key column \"user_id\" is Int64"), "{e}");

    let text_time = schema(&[("user_id", DataType::Int64), ("dt", DataType::Utf8)]);
    let e = join_sql(&call, &label, &text_time).unwrap_err().to_string();
    assert!(e.contains("must be a TIMESTAMP or a DATE"), "{e}");
}

#[test]
fn sources_read_finds_the_tables_inside_the_arguments() {
    let sql = "SELECT * FROM point_in_time('ads.s', 'ts', 'SELECT * FROM ads.uf WHERE dt > DATE ''2026-01-01''', 'k', 'dt') AS p \
               JOIN other.t ON true";
    let statement = DFParser::parse_sql_with_dialect(sql, &TimeTravelDialect)
        .unwrap()
        .pop_front()
        .unwrap();
    let DFStatement::Statement(s) = statement else {
        panic!("not a statement")
    };
    let datafusion::sql::sqlparser::ast::Statement::Query(q) = *s else {
        panic!("not a query")
    };
    let found = sources_read(&q);
    assert_eq!(
        found,
        vec![
            CallSource::Table(ObjectName::from(vec![
                datafusion::sql::sqlparser::ast::Ident::new("ads"),
                datafusion::sql::sqlparser::ast::Ident::new("s")
            ])),
            CallSource::Query("SELECT * FROM ads.uf WHERE dt > DATE '2026-01-01'".to_string()),
        ]
    );
    assert!(is_point_in_time(&ObjectName::from(vec![
        datafusion::sql::sqlparser::ast::Ident::new("POINT_IN_TIME")
    ])));
}

#[test]
fn the_function_refuses_calls_it_did_not_prepare() {
    let f = PointInTime::default();
    let e = f
        .call(&[Expr::Literal(
            ScalarValue::Utf8(Some("ads.labels".to_string())),
            None,
        )])
        .unwrap_err()
        .to_string();
    assert!(e.contains("prepared by Strata's SQL session"), "{e}");
}
