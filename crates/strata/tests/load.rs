//! File loads on the real binary: `strata load` and `COPY … FROM` in `strata sql`, from real
//! Parquet, CSV and JSON files in a temp dir and from S3 prefixes on moto. Append, overwrite
//! (whole table and one partition), merge by key, a DMS-style change folder (`Op` I/U/D with
//! a full-load file first) merged in one command, and bad input — a missing file, a malformed
//! CSV row, a column or type that does not fit — failing with a clear error and leaving the
//! table as it was.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use common::s3server::{self, S3Server};
use common::*;
use serde_json::Value;

fn load(env: &Env, args: &[&str]) -> Output {
    load_with_env(env, args, &[])
}

fn load_with_env(env: &Env, args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["load", "-c"]).arg(&env.config).args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("strata load")
}

/// Runs a load that must succeed; its JSON report.
fn load_ok(env: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = load(env, &all);
    assert!(
        out.status.success(),
        "load {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Runs a load that must fail; its error text.
fn load_err(env: &Env, args: &[&str]) -> String {
    let out = load(env, args);
    assert!(
        !out.status.success(),
        "load {args:?} should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `strata sql` that must fail; its error text.
fn sql_err(env: &Env, query: &str) -> String {
    let out = Command::new(strata_bin())
        .args(["sql", "-c"])
        .arg(&env.config)
        .arg(query)
        .output()
        .expect("strata sql");
    assert!(!out.status.success(), "{query} should have failed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn snapshots(env: &Env, table: &str) -> i64 {
    env.sql_count(&format!("SELECT count(*) FROM {table}$snapshots"))
}

fn table_exists(env: &Env, namespace: &str, table: &str) -> bool {
    env.sql_count(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{namespace}' \
         AND table_name = '{table}'"
    )) == 1
}

/// `SELECT …` rows as (column → value) maps, in the query's order.
fn rows(env: &Env, query: &str) -> Vec<serde_json::Map<String, Value>> {
    env.sql(query)
        .into_iter()
        .map(|r| r.as_object().cloned().unwrap())
        .collect()
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, parquet_bytes(columns)).unwrap();
}

fn parquet_bytes(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

/// The test's files folder (created) and a function giving a file's path in it.
fn files(env: &Env) -> impl Fn(&str) -> String {
    let dir = env.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    move |name: &str| dir.join(name).display().to_string()
}

fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn ints(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

#[test]
fn append_overwrite_and_bad_input_leave_the_table_as_it_was() {
    let env = Env::new();
    let p = files(&env);
    let dir = env.dir.path().join("files");

    // CSV into a new table: created from the header and the values' types.
    std::fs::write(
        p("orders.csv"),
        "id,name,amount,dt\n1,apple,1.5,2026-12-06\n2,pear,2.25,2026-12-06\n3,plum,3,2026-12-07\n",
    )
    .unwrap();
    let r = load_ok(&env, &["ods.orders", &p("orders.csv")]);
    assert_eq!(r["created"], true);
    assert_eq!(r["rows_read"], 3);
    assert_eq!(r["inserted"], 3);
    let types = rows(
        &env,
        "SELECT arrow_typeof(id) AS id, arrow_typeof(name) AS name, arrow_typeof(amount) AS amount, \
         arrow_typeof(dt) AS dt FROM ods.orders LIMIT 1",
    );
    assert_eq!(types[0]["id"], "Int64");
    assert_eq!(types[0]["name"], "Utf8");
    assert_eq!(types[0]["amount"], "Float64");
    assert_eq!(types[0]["dt"], "Date32");

    // JSON lines append (a missing key is NULL), one commit.
    std::fs::write(
        p("more.json"),
        "{\"id\": 4, \"name\": \"fig\", \"amount\": 4.5}\n{\"id\": 5, \"name\": \"kiwi\", \"amount\": 5, \"dt\": \"2026-12-07\"}\n",
    )
    .unwrap();
    let before = snapshots(&env, "ods.orders");
    let r = load_ok(&env, &["orders", &p("more.json")]);
    assert_eq!(r["created"], false);
    assert_eq!(r["inserted"], 2);
    assert_eq!(snapshots(&env, "ods.orders"), before + 1);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.orders"), 5);
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.orders WHERE dt IS NULL AND id = 4"),
        1
    );

    // Gzip-compressed CSV.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"id,name,amount,dt\n6,lime,6.5,2026-12-07\n")
        .unwrap();
    std::fs::write(p("lime.csv.gz"), gz.finish().unwrap()).unwrap();
    let r = load_ok(&env, &["ods.orders", &p("lime.csv.gz")]);
    assert_eq!(r["inserted"], 1);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.orders"), 6);

    // Parquet with int32 ids (a safe cast into bigint), as an overwrite of the whole table.
    write_parquet(
        &dir.join("replace.parquet"),
        vec![
            ("id", Arc::new(Int32Array::from(vec![10, 11])) as ArrayRef),
            ("name", strings(&[Some("a"), Some("b")])),
            (
                "amount",
                Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
            ),
        ],
    );
    let r = load_ok(
        &env,
        &["ods.orders", &p("replace.parquet"), "--mode", "overwrite"],
    );
    assert_eq!(r["inserted"], 2);
    assert_eq!(r["deleted"], 6);
    assert_eq!(
        env.sql_count("SELECT sum(id) FROM ods.orders"),
        21,
        "only the new rows are left"
    );

    // Bad input: every failure names what to fix and changes nothing.
    let count = env.sql_count("SELECT count(*) FROM ods.orders");
    let snaps = snapshots(&env, "ods.orders");
    let unchanged = |what: &str| {
        assert_eq!(
            env.sql_count("SELECT count(*) FROM ods.orders"),
            count,
            "{what}"
        );
        assert_eq!(snapshots(&env, "ods.orders"), snaps, "{what}");
    };
    // A missing file.
    let err = load_err(&env, &["ods.orders", &p("nope.csv")]);
    assert!(
        err.contains("nope.csv") && err.contains("no such file"),
        "{err}"
    );
    unchanged("missing file");
    // A type that does not fit: text into a double column.
    write_parquet(
        &dir.join("bad_type.parquet"),
        vec![("id", ints(&[20])), ("amount", strings(&[Some("lots")]))],
    );
    let err = load_err(&env, &["ods.orders", &p("bad_type.parquet")]);
    assert!(
        err.contains("column amount is string") && err.contains("double"),
        "{err}"
    );
    unchanged("type mismatch");
    // A narrowing cast is refused too (bigint into an int column would be; here double into
    // bigint).
    write_parquet(
        &dir.join("narrow.parquet"),
        vec![("id", Arc::new(Float64Array::from(vec![1.5])) as ArrayRef)],
    );
    let err = load_err(&env, &["ods.orders", &p("narrow.parquet")]);
    assert!(
        err.contains("column id is double") && err.contains("bigint"),
        "{err}"
    );
    unchanged("narrowing");
    // A column the table does not have.
    std::fs::write(p("extra.csv"), "id,colour\n1,red\n").unwrap();
    let err = load_err(&env, &["ods.orders", &p("extra.csv")]);
    assert!(err.contains("column colour is not in ods.orders"), "{err}");
    unchanged("unknown column");
    // A malformed CSV row in the second file of a directory: the first file's rows are not
    // committed either.
    let batch_dir = dir.join("batch");
    std::fs::create_dir_all(&batch_dir).unwrap();
    std::fs::write(batch_dir.join("a.csv"), "id,name,amount\n30,x,1\n31,y,2\n").unwrap();
    std::fs::write(
        batch_dir.join("b.csv"),
        "id,name,amount\n32,z,3\n33,w,three\n",
    )
    .unwrap();
    let err = load_err(&env, &["ods.orders", &batch_dir.display().to_string()]);
    assert!(
        err.contains("b.csv")
            && err.contains("three")
            && err.contains("at line 3")
            && err.contains("(column amount)"),
        "{err}"
    );
    unchanged("malformed row");
    // A row with too many fields.
    std::fs::write(p("ragged.csv"), "id,name\n40,a\n41,b,extra\n").unwrap();
    let err = load_err(&env, &["ods.orders", &p("ragged.csv")]);
    assert!(err.contains("ragged.csv"), "{err}");
    unchanged("ragged row");
    // A failed load into a new table leaves no table behind.
    let err = load_err(&env, &["ods.fresh", &p("ragged.csv")]);
    assert!(err.contains("ragged.csv"), "{err}");
    assert!(!table_exists(&env, "ods", "fresh"));
    // A file whose format cannot be told.
    std::fs::write(p("notes.txt"), "id\n1\n").unwrap();
    let err = load_err(&env, &["ods.orders", &p("notes.txt")]);
    assert!(err.contains("--format"), "{err}");
    // ... unless given.
    let r = load_ok(&env, &["ods.orders", &p("notes.txt"), "--format", "csv"]);
    assert_eq!(r["inserted"], 1);
    // Flags that do not belong to the mode.
    let err = load_err(&env, &["ods.orders", &p("orders.csv"), "--key", "id"]);
    assert!(err.contains("--mode merge"), "{err}");
}

#[test]
fn overwrite_one_partition() {
    let env = Env::new();
    let p = files(&env);
    std::fs::write(
        p("days.csv"),
        "dt,n\n2026-12-06,1\n2026-12-06,2\n2026-12-07,3\n",
    )
    .unwrap();
    let r = load_ok(&env, &["dwd.daily", &p("days.csv"), "--partition-by", "dt"]);
    assert_eq!(r["created"], true);
    std::fs::write(p("redo.csv"), "dt,n\n2026-12-07,30\n2026-12-07,31\n").unwrap();
    let r = load_ok(
        &env,
        &[
            "dwd.daily",
            &p("redo.csv"),
            "--mode",
            "overwrite",
            "--partition",
            "dt=2026-12-07",
        ],
    );
    assert_eq!(r["inserted"], 2);
    assert_eq!(r["deleted"], 1);
    assert_eq!(
        env.sql_count("SELECT sum(n) FROM dwd.daily"),
        1 + 2 + 30 + 31
    );
    // Rows outside the named partition are refused.
    let err = load_err(
        &env,
        &[
            "dwd.daily",
            &p("days.csv"),
            "--mode",
            "overwrite",
            "--partition",
            "dt=2026-12-07",
        ],
    );
    assert!(err.contains("outside the partition"), "{err}");
    assert_eq!(env.sql_count("SELECT sum(n) FROM dwd.daily"), 64);
}

/// The seed's DMS + Glue MERGE use case: a folder of DMS output — a full-load file without an
/// `Op` column, then change files with `Op` and a commit timestamp — merged into an ODS table
/// with one command, latest change per key winning and deletes applied.
#[test]
fn dms_change_folder_merges_in_one_command() {
    let env = Env::new();
    let raw = env.dir.path().join("dms/shop/customers");
    // Full load: no Op column, no timestamp.
    write_parquet(
        &raw.join("LOAD00000001.parquet"),
        vec![
            ("id", ints(&[1, 2, 3, 4])),
            (
                "name",
                strings(&[Some("ann"), Some("bob"), Some("cy"), Some("dee")]),
            ),
            (
                "city",
                strings(&[Some("oslo"), Some("rome"), Some("lima"), Some("kyiv")]),
            ),
        ],
    );
    // Changes, the timestamp column as DMS writes it (text).
    write_parquet(
        &raw.join("20261207-100000000.parquet"),
        vec![
            (
                "Op",
                strings(&[Some("U"), Some("D"), Some("I"), Some("U"), Some("D")]),
            ),
            (
                "ts",
                strings(&[
                    Some("2026-12-07 10:00:01"),
                    Some("2026-12-07 10:00:02"),
                    Some("2026-12-07 10:00:03"),
                    Some("2026-12-07 10:00:05"),
                    Some("2026-12-07 10:00:06"),
                ]),
            ),
            ("id", ints(&[1, 2, 5, 5, 3])),
            (
                "name",
                strings(&[
                    Some("ann2"),
                    Some("bob"),
                    Some("eve"),
                    Some("eve2"),
                    Some("cy"),
                ]),
            ),
            (
                "city",
                strings(&[
                    Some("oslo"),
                    Some("rome"),
                    Some("faro"),
                    Some("faro"),
                    Some("lima"),
                ]),
            ),
        ],
    );
    // A later file: id 1 again; id 3 comes back; a delete of a key never seen. Its rows are
    // out of time order: the timestamp decides, not the row order.
    write_parquet(
        &raw.join("20261207-110000000.parquet"),
        vec![
            ("Op", strings(&[Some("I"), Some("U"), Some("U"), Some("D")])),
            (
                "ts",
                strings(&[
                    Some("2026-12-07 11:00:02"),
                    Some("2026-12-07 11:00:09"),
                    Some("2026-12-07 11:00:01"),
                    Some("2026-12-07 11:00:03"),
                ]),
            ),
            ("id", ints(&[3, 1, 1, 99])),
            (
                "name",
                strings(&[Some("cy3"), Some("ann-latest"), Some("ann-older"), None]),
            ),
            (
                "city",
                strings(&[Some("quito"), Some("bergen"), Some("oslo"), None]),
            ),
        ],
    );
    // DMS's own marker files are skipped.
    std::fs::write(raw.join("_SUCCESS"), "").unwrap();
    let folder = raw.display().to_string();
    let args = [
        "ods.ods_customers",
        folder.as_str(),
        "--mode",
        "merge",
        "--key",
        "id",
        "--op-column",
        "Op",
        "--order-by",
        "ts",
    ];
    let r = load_ok(&env, &args);
    assert_eq!(r["created"], true);
    assert_eq!(r["files"], 3);
    assert_eq!(r["rows_read"], 4 + 5 + 4);
    let expected = serde_json::json!([
        {"id": 1, "name": "ann-latest", "city": "bergen"},
        {"id": 3, "name": "cy3", "city": "quito"},
        {"id": 4, "name": "dee", "city": "kyiv"},
        {"id": 5, "name": "eve2", "city": "faro"},
    ]);
    let got = || {
        Value::Array(
            env.sql("SELECT id, name, city FROM ods.ods_customers ORDER BY id")
                .into_iter()
                .collect(),
        )
    };
    assert_eq!(got(), expected);
    // The op column is not stored; the timestamp is.
    let columns: Vec<String> = env
        .sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'ods' \
             AND table_name = 'ods_customers' ORDER BY ordinal_position",
        )
        .into_iter()
        .map(|r| r["column_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(columns, ["id", "name", "city", "ts"]);

    // Running the same command again changes nothing.
    let r = load_ok(&env, &args);
    assert_eq!(r["created"], false);
    assert_eq!(got(), expected);

    // The next hour's file, in the same folder: only its changes matter now.
    write_parquet(
        &raw.join("20261207-120000000.parquet"),
        vec![
            ("Op", strings(&[Some("D"), Some("U")])),
            (
                "ts",
                strings(&[Some("2026-12-07 12:00:00"), Some("2026-12-07 12:00:01")]),
            ),
            ("id", ints(&[4, 5])),
            ("name", strings(&[Some("dee"), Some("eve3")])),
            ("city", strings(&[Some("kyiv"), Some("faro")])),
        ],
    );
    load_ok(&env, &args);
    assert_eq!(
        got(),
        serde_json::json!([
            {"id": 1, "name": "ann-latest", "city": "bergen"},
            {"id": 3, "name": "cy3", "city": "quito"},
            {"id": 5, "name": "eve3", "city": "faro"},
        ])
    );

    // A bad op value names the file and row, and changes nothing.
    let snaps = snapshots(&env, "ods.ods_customers");
    let bad = env.dir.path().join("bad_op.parquet");
    write_parquet(
        &bad,
        vec![
            ("Op", strings(&[Some("U"), Some("X")])),
            ("id", ints(&[1, 3])),
            ("name", strings(&[Some("n"), Some("m")])),
        ],
    );
    let bad = bad.display().to_string();
    let err = load_err(
        &env,
        &[
            "ods.ods_customers",
            &bad,
            "--mode",
            "merge",
            "--key",
            "id",
            "--op-column",
            "Op",
        ],
    );
    assert!(
        err.contains("bad_op.parquet") && err.contains("row 2") && err.contains("\"X\""),
        "{err}"
    );
    assert_eq!(snapshots(&env, "ods.ods_customers"), snaps);
    // The same file into a table the load creates: the error comes after the table was
    // created, which is dropped again.
    let err = load_err(
        &env,
        &[
            "ods.ods_fresh",
            &bad,
            "--mode",
            "merge",
            "--key",
            "id",
            "--op-column",
            "Op",
        ],
    );
    assert!(err.contains("\"X\""), "{err}");
    assert!(!table_exists(&env, "ods", "ods_fresh"));
}

#[test]
fn merge_upserts_csv_without_an_op_column() {
    let env = Env::new();
    let p = files(&env);
    std::fs::write(p("a.csv"), "id,score,note\n1,10,x\n2,20,y\n").unwrap();
    load_ok(&env, &["ods.scores", &p("a.csv")]);
    // Upsert: id 2 twice in the file (the later row wins), id 3 new; the file has no `note`
    // column, so updated rows keep theirs.
    std::fs::write(p("b.csv"), "id,score\n2,21\n3,30\n2,22\n").unwrap();
    let r = load_ok(
        &env,
        &["ods.scores", &p("b.csv"), "--mode", "merge", "--key", "id"],
    );
    assert_eq!(r["updated"], 1);
    assert_eq!(r["inserted"], 1);
    assert_eq!(
        Value::Array(
            env.sql("SELECT id, score, coalesce(note, '-') AS note FROM ods.scores ORDER BY id")
        ),
        serde_json::json!([
            {"id": 1, "score": 10, "note": "x"},
            {"id": 2, "score": 22, "note": "y"},
            {"id": 3, "score": 30, "note": "-"},
        ])
    );
    // A key column the file lacks, a key the table lacks, an empty key.
    std::fs::write(p("nokey.csv"), "score\n5\n").unwrap();
    let err = load_err(
        &env,
        &[
            "ods.scores",
            &p("nokey.csv"),
            "--mode",
            "merge",
            "--key",
            "id",
        ],
    );
    assert!(err.contains("no key column id"), "{err}");
    let err = load_err(
        &env,
        &["ods.scores", &p("b.csv"), "--mode", "merge", "--key", "uid"],
    );
    assert!(err.contains("uid"), "{err}");
    std::fs::write(p("nullkey.csv"), "id,score\n4,1\n,2\n").unwrap();
    let err = load_err(
        &env,
        &[
            "ods.scores",
            &p("nullkey.csv"),
            "--mode",
            "merge",
            "--key",
            "id",
        ],
    );
    assert!(
        err.contains("row 2 has no value for the key column id"),
        "{err}"
    );
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.scores"), 3);
}

#[test]
fn copy_from_in_sql() {
    let env = Env::new();
    let dir = env.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("users.json"),
        "{\"id\": 1, \"plan\": \"free\"}\n{\"id\": 2, \"plan\": \"pro\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("changes.csv"),
        "id,plan,Op\n2,team,U\n1,free,D\n3,pro,I\n",
    )
    .unwrap();
    let d = dir.display();
    let out = env.sql(&format!(
        "COPY ods.users FROM '{d}/users.json' (FORMAT json)"
    ));
    assert_eq!(out[0]["operation"], "copy");
    assert_eq!(out[0]["rows_inserted"], 2);
    let out = env.sql(&format!(
        "COPY ods.users FROM '{d}/changes.csv' WITH (FORMAT csv, MODE merge, KEY 'id', OP_COLUMN 'Op'); \
         SELECT id, plan FROM ods.users ORDER BY id"
    ));
    assert_eq!(
        Value::Array(out),
        serde_json::json!([{"id": 2, "plan": "team"}, {"id": 3, "plan": "pro"}])
    );
    // Bad input is an error of the statement.
    let err = sql_err(&env, &format!("COPY ods.users FROM '{d}/missing.csv'"));
    assert!(
        err.contains("missing.csv") && err.contains("no such file"),
        "{err}"
    );
    let err = sql_err(
        &env,
        &format!("COPY ods.users FROM '{d}/users.json' (MODE upsert)"),
    );
    assert!(err.contains("append, overwrite or merge"), "{err}");
    // COPY … TO is still DataFusion's.
    let target = dir.join("out.csv");
    env.sql(&format!(
        "COPY (SELECT id FROM ods.users) TO '{}' STORED AS CSV",
        target.display()
    ));
    assert!(target.exists());
}

/// PUTs `body` at `bucket/key` on moto (which takes unsigned requests).
fn put_object(s3: &S3Server, bucket: &str, key: &str, body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", s3.port)).unwrap();
    write!(
        s,
        "PUT /{bucket}/{key} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
        s3.port,
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"),
        "{out}"
    );
}

#[test]
fn loads_an_s3_prefix() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    const BUCKET: &str = "strata-load";
    s3.create_bucket(BUCKET);
    s3.create_bucket("partner-drops");
    // Two CSV parts and a Parquet part under one prefix, a marker file, and a file beside the
    // prefix that must not be picked up.
    put_object(
        &s3,
        "partner-drops",
        "orders/2026-12-07/part-0.csv",
        b"id,amount\n1,10\n2,20\n",
    );
    put_object(
        &s3,
        "partner-drops",
        "orders/2026-12-07/part-1.csv",
        b"id,amount\n3,30\n",
    );
    put_object(&s3, "partner-drops", "orders/2026-12-07/_SUCCESS", b"x");
    put_object(
        &s3,
        "partner-drops",
        "orders/2026-12-070/other.csv",
        b"id,amount\n9,90\n",
    );

    // The lake on S3: its settings reach the other bucket.
    let env = Env::new();
    env.use_s3(&s3.endpoint(), BUCKET, &[]);
    let r = load_ok(
        &env,
        &[
            "ods.partner_orders",
            "s3://partner-drops/orders/2026-12-07/",
        ],
    );
    assert_eq!(r["files"], 2);
    assert_eq!(r["inserted"], 3);
    assert_eq!(
        env.sql_count("SELECT sum(amount) FROM ods.partner_orders"),
        60
    );
    // One object by its URL, through SQL.
    let out =
        env.sql("COPY ods.partner_orders FROM 's3://partner-drops/orders/2026-12-07/part-1.csv'");
    assert_eq!(out[0]["rows_inserted"], 1);
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.partner_orders"), 4);
    // A prefix with nothing under it.
    let err = load_err(&env, &["ods.partner_orders", "s3://partner-drops/nothing/"]);
    assert!(err.contains("s3://partner-drops/nothing/"), "{err}");
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.partner_orders"), 4);

    // A DMS folder on S3 (full load, then changes) merged into an ODS table.
    let full = parquet_bytes(vec![
        ("id", ints(&[1, 2])),
        ("name", strings(&[Some("ann"), Some("bob")])),
    ]);
    let changes = parquet_bytes(vec![
        ("Op", strings(&[Some("D"), Some("U"), Some("I")])),
        ("id", ints(&[1, 2, 3])),
        ("name", strings(&[Some("ann"), Some("bob2"), Some("cy")])),
    ]);
    put_object(
        &s3,
        "partner-drops",
        "dms/shop/users/20261207-100000000.parquet",
        &changes,
    );
    put_object(
        &s3,
        "partner-drops",
        "dms/shop/users/LOAD00000001.parquet",
        &full,
    );
    let r = load_ok(
        &env,
        &[
            "ods.ods_users",
            "s3://partner-drops/dms/shop/users/",
            "--mode",
            "merge",
            "--key",
            "id",
            "--op-column",
            "Op",
        ],
    );
    assert_eq!(r["files"], 2);
    assert_eq!(
        Value::Array(env.sql("SELECT id, name FROM ods.ods_users ORDER BY id")),
        serde_json::json!([{"id": 2, "name": "bob2"}, {"id": 3, "name": "cy"}])
    );

    // A local lake reaches S3 with the AWS_* variables.
    let local = Env::new();
    let vars = [
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_ACCESS_KEY_ID", s3server::ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", s3server::SECRET_KEY.to_string()),
        ("AWS_REGION", s3server::REGION.to_string()),
    ];
    let out = load_with_env(
        &local,
        &[
            "ods.partner_orders",
            "s3://partner-drops/orders/2026-12-07/",
        ],
        &vars,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        local.sql_count("SELECT count(*) FROM ods.partner_orders"),
        3
    );
}
