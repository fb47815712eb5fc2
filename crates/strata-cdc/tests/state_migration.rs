//! State files written before connectors had typed positions (format 1: `strata serve` of
//! main at fa17186, against MariaDB 10.11 and PostgreSQL 15, copied from `<data>/cdc/` into
//! `fixtures/state-v1/`) load, resume at the same position and are rewritten in format 2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::path::PathBuf;

use strata_cdc::mysql::gtid::GtidState;
use strata_cdc::mysql::position::BinlogPos;
use strata_cdc::postgres::position::Lsn;
use strata_cdc::state::{self, Phase, SourceState, FORMAT};
use strata_cdc::Position;

fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = state::state_path(dir.path(), "app");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let src = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo and nextest set CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/state-v1")
    .join(name);
    std::fs::copy(src, &path).unwrap();
    (dir, path)
}

/// Loads with migration; checks the file is rewritten in format 2 and reads back the same.
fn migrate<P: Position + PartialEq>(path: &std::path::Path) -> (SourceState<P>, serde_json::Value) {
    let bytes = std::fs::read(path).unwrap();
    let old: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(old.get("format").is_none(), "the fixture is format 1");
    // Reading alone (`strata cdc status`) does not rewrite.
    let read: SourceState<P> = state::load(path).unwrap().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    let migrated: SourceState<P> = state::load_migrating(path).unwrap().unwrap();
    assert_eq!(migrated.resume, read.resume);
    let new: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(new["format"], FORMAT);
    let again: SourceState<P> = state::load(path).unwrap().unwrap();
    assert_eq!(again.resume, migrated.resume);
    assert_eq!(again.snapshot_start, migrated.snapshot_start);
    assert_eq!(again.tables, migrated.tables);
    // Progress other than positions is kept.
    for key in ["phase", "changes", "last_commit_ts", "last_error"] {
        assert_eq!(new[key], old[key], "{key}");
    }
    (migrated, new)
}

#[test]
fn a_mariadb_state_of_format_1_resumes_at_its_binlog_position_and_gtid() {
    for (name, resume, gtid) in [
        ("mysql-stream.json", 2293, "0-1-10"),
        ("mysql-resnapshot.json", 2515, "0-1-11"),
    ] {
        let (_dir, path) = fixture(name);
        let (s, new) = migrate::<BinlogPos>(&path);
        assert_eq!(s.phase, Phase::Stream);
        let want = BinlogPos {
            file: "binlog.000001".into(),
            pos: resume,
            gtid: Some(GtidState::Mariadb(gtid.parse().unwrap())),
        };
        // The stream is requested at exactly these coordinates (file, offset, GTID position).
        assert_eq!(s.resume, want, "{name}");
        assert_eq!(s.snapshot_start.pos, 2071);
        // The binlog position keeps its shape.
        assert_eq!(new["resume"]["file"], "binlog.000001");
        assert_eq!(new["resume"]["pos"], resume);
        assert_eq!(new["resume"]["gtid"]["mariadb"], gtid);
    }
    let (_dir, path) = fixture("mysql-resnapshot.json");
    let s = migrate::<BinlogPos>(&path).0;
    assert_eq!(
        s.tables["users"].start,
        Some(BinlogPos {
            file: "binlog.000001".into(),
            pos: 2293,
            gtid: Some(GtidState::Mariadb("0-1-10".parse().unwrap())),
        })
    );
    assert_eq!(s.tables["users"].rows, 5);
}

#[test]
fn a_postgres_state_of_format_1_resumes_at_its_lsn() {
    let (_dir, path) = fixture("postgres-stream.json");
    let (s, new) = migrate::<Lsn>(&path);
    // Format 1 saved {"file": "0/19250E8", "pos": 26366184}: the same LSN twice.
    assert_eq!(s.resume, Lsn(26366184));
    assert_eq!(s.resume.to_string(), "0/19250E8");
    assert_eq!(s.snapshot_start, Lsn(26365880));
    assert_eq!(new["resume"], "0/19250E8");
    assert_eq!(new["snapshot_start"], "0/1924FB8");

    let (_dir, path) = fixture("postgres-resnapshot.json");
    let (s, new) = migrate::<Lsn>(&path);
    assert_eq!(s.resume, Lsn(26366416));
    assert_eq!(s.tables["users"].start, Some(Lsn(26366240)));
    assert_eq!(new["tables"]["users"]["start"], "0/1925120");
    // Snapshot reads taken at the migrated start carry the same bus coordinate as before
    // (format 1 used the fixed-width LSN text and the LSN).
    let p = s.tables["users"].start.unwrap().snapshot_read(0);
    assert_eq!((p.file.as_str(), p.pos), ("00000000/01925120", 26366240));
}

#[test]
fn a_state_of_another_kind_or_a_newer_format_is_a_clear_error() {
    let (_dir, path) = fixture("mysql-stream.json");
    let err = state::load::<Lsn>(&path).unwrap_err();
    assert!(err.to_string().contains("bad state file"), "{err}");
    let (_dir, path) = fixture("postgres-stream.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["format"] = 9.into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = state::load::<Lsn>(&path).unwrap_err();
    assert!(err.to_string().contains("format 9 is newer"), "{err}");
}
