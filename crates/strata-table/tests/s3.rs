//! The lake on a real S3-compatible server (moto on loopback, see `s3server/`): tables created,
//! written (including a multipart upload), changed row by row, compacted, expired and swept of
//! orphans, with every table file on S3 and only the catalog on disk; and a clear error at open
//! when S3 cannot be reached.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod s3server;

use std::path::Path;
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use s3server::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::table::maintain::{compact, expire_snapshots, remove_orphans, CompactOptions};
use strata_table::Lake;

const BUCKET: &str = "strata-lake-test";

fn config(dir: &Path, endpoint: &str) -> LakeOptions {
    let mut c = LakeOptions::new(dir);
    c.lake.warehouse = format!("s3://{BUCKET}/wh").into();
    c.lake.s3_endpoint = endpoint.to_string();
    c.lake.s3_region = REGION.to_string();
    c.lake.s3_access_key_id = ACCESS_KEY.to_string();
    c.lake.s3_secret_access_key = SECRET_KEY.to_string();
    c.lake.s3_path_style = strata_table::config::s3::PathStyle::Path;
    // S3's smallest part, so a ~6 MiB Parquet file goes up as a multipart upload.
    c.lake.s3_part_size = 5 * 1024 * 1024;
    c.lake.s3_max_retries = 2;
    c.lake.s3_retry_timeout = Duration::from_secs(10);
    c.lake.validate().expect("valid S3 config");
    c
}

fn scalar(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    let col = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("an i64 column");
    assert!(!col.is_null(0));
    col.value(0)
}

async fn count(lake: &Lake, sql: &str) -> i64 {
    let session = SqlSession::new(lake).await.expect("session");
    scalar(&session.run(sql).await.expect(sql))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_live_on_s3_and_only_the_catalog_is_local() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &s3.endpoint());
    let lake = Lake::open(&cfg).await.expect("open lake on S3");
    assert_eq!(lake.warehouse(), format!("s3://{BUCKET}/wh"));

    // The ODS tables were created on S3.
    let keys = s3.keys(BUCKET, "wh/ods/ods_event/metadata/");
    assert!(
        keys.iter().any(|k| k.ends_with(".metadata.json")),
        "{keys:?}"
    );

    let session = SqlSession::new(&lake).await.expect("session");
    session
        .run(
            "CREATE NAMESPACE IF NOT EXISTS s3t; \
             CREATE TABLE s3t.big AS SELECT value AS id, sha256(CAST(value AS VARCHAR)) AS h, \
             sha512(CAST(value AS VARCHAR)) AS h2 FROM generate_series(1, 60000)",
        )
        .await
        .expect("create table as select");
    assert_eq!(count(&lake, "SELECT count(*) FROM s3t.big").await, 60000);
    // Random-looking hashes do not compress: the data file passed the 5 MiB part size and was
    // uploaded in parts (moto logs the CreateMultipartUpload call).
    assert!(
        s3.log().contains("?uploads"),
        "no multipart upload seen:\n{}",
        s3.log()
    );
    let data = s3.keys(BUCKET, "wh/s3t/big/data/");
    assert!(data.iter().any(|k| k.ends_with(".parquet")), "{data:?}");

    // Row-level changes (position deletes / rewrites), then a few small appends.
    session
        .run("DELETE FROM s3t.big WHERE id % 10 = 0")
        .await
        .expect("delete");
    session
        .run("UPDATE s3t.big SET h = 'x' WHERE id <= 100")
        .await
        .expect("update");
    for i in 0..3 {
        session
            .run(&format!(
                "INSERT INTO s3t.big VALUES ({}, 'a', 'b')",
                100_000 + i
            ))
            .await
            .expect("insert");
    }
    let expected = 60000 - 6000 + 3;
    assert_eq!(count(&lake, "SELECT count(*) FROM s3t.big").await, expected);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM s3t.big WHERE h = 'x'").await,
        90
    );

    // Maintenance on S3: compaction folds the deletes, expiry drops old snapshots' files,
    // orphan removal lists the bucket and deletes only what nothing references.
    let ident = strata_table::table::maintain::parse_table_name("s3t.big").expect("name");
    let report = compact(
        &lake,
        &ident,
        &CompactOptions {
            target_file_size: 64 * 1024 * 1024,
            min_input_files: 2,
            small_file_threshold: 0.75,
        },
    )
    .await
    .expect("compact on S3");
    assert!(report.data_files_rewritten > 0, "{report:?}");
    assert_eq!(count(&lake, "SELECT count(*) FROM s3t.big").await, expected);
    let expired = expire_snapshots(&lake, &ident, Duration::ZERO, 1)
        .await
        .expect("expire on S3");
    assert!(
        expired.snapshots_removed > 0 && expired.manifest_lists_deleted > 0,
        "{expired:?}"
    );
    assert_eq!(expired.delete_failures, 0, "{expired:?}");
    assert_eq!(count(&lake, "SELECT count(*) FROM s3t.big").await, expected);

    // An orphan: a data file no snapshot references (as a crashed write leaves).
    let orphan = format!("s3://{BUCKET}/wh/s3t/big/data/orphan-00000.parquet");
    let table = lake.load_table(&ident).await.expect("load");
    table
        .file_io()
        .new_output(&orphan)
        .expect("output")
        .write(bytes::Bytes::from_static(b"not parquet"))
        .await
        .expect("write orphan");
    // Too recent for the default cutoff...
    let kept = remove_orphans(&lake, &ident, Duration::from_secs(3600))
        .await
        .expect("orphans");
    assert!(kept.deleted.is_empty() && kept.too_recent >= 1, "{kept:?}");
    // ... removed with a zero cutoff, and nothing referenced goes with it.
    let removed = remove_orphans(&lake, &ident, Duration::ZERO)
        .await
        .expect("orphans");
    assert_eq!(removed.deleted, vec![orphan.clone()], "{removed:?}");
    assert!(!table.file_io().exists(&orphan).await.expect("exists"));
    assert_eq!(count(&lake, "SELECT count(*) FROM s3t.big").await, expected);

    // Nothing but the catalog (and the spill dir) is on disk.
    let on_disk: Vec<String> = walk(dir.path());
    assert!(
        on_disk
            .iter()
            .all(|p| p.ends_with("catalog.db") || p.contains("catalog.db-") || p.contains("/tmp/")),
        "table files on local disk: {on_disk:?}"
    );

    // A second open of the same catalog and bucket reads the same rows.
    drop(session);
    drop(lake);
    let again = Lake::open(&cfg).await.expect("reopen");
    assert_eq!(
        count(&again, "SELECT count(*) FROM s3t.big").await,
        expected
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_or_missing_bucket_fails_open_naming_the_endpoint() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // No bucket created yet.
    let err = Lake::open(&config(dir.path(), &s3.endpoint()))
        .await
        .expect_err("missing bucket");
    let msg = err.to_string();
    assert!(
        msg.contains(BUCKET) && msg.contains(&s3.endpoint()),
        "{msg}"
    );

    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}", s3server::free_port());
    let err = Lake::open(&config(dir.path(), &dead))
        .await
        .expect_err("unreachable endpoint");
    let msg = err.to_string();
    assert!(
        msg.contains(&dead) && msg.contains("not reachable"),
        "{msg}"
    );
}
