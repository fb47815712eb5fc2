//! GTID text forms, interval arithmetic and what a topic holds by GTID.
//!
//! The MariaDB side is also exercised against real servers (`crates/strata/tests/
//! cdc_mariadb.rs`, a failover from a primary to its replica). The MySQL side is NOT tested
//! against a MySQL server: no MySQL server installs on the machines these tests run on
//! (Debian ships MariaDB only, and no package on PyPI or npm ships `mysqld`). What is tested
//! here is the set logic and its conversion to the `Sid`s that `COM_BINLOG_DUMP_GTID` sends;
//! that a MySQL server accepts the request and resumes correctly is unverified.

use super::*;

const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "00000000-0000-0000-0000-0000000000ff";

fn uuid(text: &str) -> [u8; 16] {
    parse_uuid(text).unwrap()
}

#[test]
fn uuids_parse_in_any_case_and_print_lowercase() {
    let u = uuid("3E11FA47-71CA-11E1-9E33-C80AA9429562");
    assert_eq!(uuid_text(&u), U1);
    assert_eq!(u[0], 0x3e);
    assert_eq!(u[15], 0x62);
    for bad in [
        "",
        "3e11fa4771ca11e19e33c80aa9429562",
        "3e11fa47-71ca-11e1-9e33-c80aa942956",
        "3e11fa47-71ca-11e1-9e33-c80aa94295620",
        "3e11fa4-771ca-11e1-9e33-c80aa9429562",
        "+e11fa47-71ca-11e1-9e33-c80aa9429562",
        "3e11fa47-71ca-11e1-9e33-c80aa942956g",
    ] {
        assert_eq!(parse_uuid(bad), None, "{bad:?}");
    }
}

#[test]
fn single_gtids_parse_and_print_as_the_servers_spell_them() {
    assert_eq!(
        Gtid::parse("0-1-42"),
        Some(Gtid::Mariadb {
            domain: 0,
            server: 1,
            seq: 42
        })
    );
    let g = Gtid::parse(&format!("{U1}:17")).unwrap();
    assert_eq!(g.to_string(), format!("{U1}:17"));
    assert_eq!((g.stream(), g.seq()), (Stream::Uuid(uuid(U1)), 17));
    assert_eq!(
        Gtid::parse("4294967295-7-9").unwrap().to_string(),
        "4294967295-7-9"
    );
    for bad in [
        "",
        "xid:12",
        "0-1",
        "0-1-2-3",
        "a-1-2",
        &format!("{U1}:0"),
        &format!("{U1}:tag:5"),
        &format!("{U1}:1-5"),
    ] {
        assert_eq!(Gtid::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn mariadb_positions_keep_the_last_gtid_per_domain() {
    let mut p: MariadbPos = "".parse().unwrap();
    assert!(p.is_empty());
    assert_eq!(p.to_string(), "");
    p.apply(0, 1, 5);
    p.apply(2, 9, 1);
    p.apply(0, 3, 6);
    assert_eq!(p.to_string(), "0-3-6,2-9-1");
    let back: MariadbPos = " 2-9-1,\n0-3-6 ".parse().unwrap();
    assert_eq!(back, p);
    assert!("0-1-5,0-2-6"
        .parse::<MariadbPos>()
        .unwrap_err()
        .contains("twice"));
    assert!("0-1".parse::<MariadbPos>().is_err());
    assert!(format!("{U1}:5").parse::<MariadbPos>().is_err());
}

#[test]
fn mysql_sets_parse_merge_and_print_in_canonical_form() {
    let s: MysqlSet = format!("{U1}:1-100:105, \n{U2}:1-5").parse().unwrap();
    // UUIDs sort by their bytes, as the server prints them.
    assert_eq!(s.to_string(), format!("{U2}:1-5,{U1}:1-100:105"));
    // Overlapping, adjacent and unsorted intervals merge; single numbers print alone.
    let s: MysqlSet = format!("{U1}:7:1-3:4:10-12:11-20:9").parse().unwrap();
    assert_eq!(s.to_string(), format!("{U1}:1-4:7:9-20"));
    // The same UUID in two entries.
    let s: MysqlSet = format!("{U1}:1-2,{U1}:3").parse().unwrap();
    assert_eq!(s.to_string(), format!("{U1}:1-3"));
    assert!("".parse::<MysqlSet>().unwrap().is_empty());
    for bad in [
        U1.to_string(),
        format!("{U1}:0"),
        format!("{U1}:5-3"),
        format!("{U1}:x"),
        format!("{U1}:1-"),
        format!("{U1}:tag:1-5"),
        format!("{U1}:18446744073709551615"),
        "0-1-5".to_string(),
    ] {
        assert!(bad.parse::<MysqlSet>().is_err(), "{bad:?}");
    }
}

#[test]
fn adding_gnos_extends_fills_gaps_and_merges_intervals() {
    let u = uuid(U1);
    let mut s = MysqlSet::default();
    for gno in [1, 2, 3, 5, 8, 7] {
        s.add(u, gno);
    }
    assert_eq!(s.to_string(), format!("{U1}:1-3:5:7-8"));
    // The gap closes: 3 and 5 join through 4, and 6 joins 5 with 7-8.
    s.add(u, 4);
    assert_eq!(s.to_string(), format!("{U1}:1-5:7-8"));
    s.add(u, 6);
    assert_eq!(s.to_string(), format!("{U1}:1-8"));
    // Already there: nothing changes.
    s.add(u, 3);
    assert_eq!(s.to_string(), format!("{U1}:1-8"));
    s.add(uuid(U2), 100);
    assert_eq!(s.to_string(), format!("{U2}:100,{U1}:1-8"));
    assert!(s.contains(&u, 1) && s.contains(&u, 8) && !s.contains(&u, 9));
    assert!(!s.contains(&uuid(U2), 99) && s.contains(&uuid(U2), 100));
}

#[test]
fn sids_for_the_dump_request_use_half_open_intervals() {
    let s: MysqlSet = format!("{U1}:1-100:105,{U2}:7").parse().unwrap();
    let sids = s.to_sids();
    assert_eq!(sids.len(), 2);
    let by_uuid = |u: &str| sids.iter().find(|s| s.uuid() == uuid(u)).unwrap();
    let iv = |u: &str| {
        by_uuid(u)
            .intervals()
            .iter()
            .map(|i| (i.start(), i.end()))
            .collect::<Vec<_>>()
    };
    assert_eq!(iv(U1), vec![(1, 101), (105, 106)]);
    assert_eq!(iv(U2), vec![(7, 8)]);
    // mysql_common prints a Sid the way the server does: the same text back.
    assert_eq!(by_uuid(U1).to_string(), format!("{U1}:1-100:105"));
    assert!(MysqlSet::default().to_sids().is_empty());
}

#[test]
fn states_round_trip_through_the_state_file_form() {
    let mut m = GtidState::Mariadb("0-1-5".parse().unwrap());
    m.apply(&Gtid::parse("1-2-3").unwrap());
    // A MySQL GTID does not change a MariaDB position.
    m.apply(&Gtid::parse(&format!("{U1}:1")).unwrap());
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"mariadb":"0-1-5,1-2-3"}"#);
    assert_eq!(serde_json::from_str::<GtidState>(&json).unwrap(), m);

    let mut y = GtidState::Mysql(format!("{U1}:1-3").parse().unwrap());
    y.apply(&Gtid::parse(&format!("{U1}:4")).unwrap());
    let json = serde_json::to_string(&y).unwrap();
    assert_eq!(json, format!(r#"{{"mysql":"{U1}:1-4"}}"#));
    assert_eq!(serde_json::from_str::<GtidState>(&json).unwrap(), y);
    assert!(serde_json::from_str::<GtidState>(r#"{"mysql":"nonsense"}"#).is_err());
    assert!(GtidState::Mariadb(MariadbPos::default()).is_empty());
}

#[test]
fn a_topic_holds_older_transactions_whole_and_its_last_one_in_part() {
    // Newest first: the topic ends with 3 changes of 0-1-12 (a huge transaction flushed in
    // part), after 0-1-11 and a change from domain 1.
    let held = Held::from_tail(["0-1-12", "0-1-12", "0-1-11", "1-5-40"], 3).unwrap();
    let g = |t: &str| Gtid::parse(t).unwrap();
    assert_eq!(held.part(&g("0-1-12")), HeldPart::First(3));
    assert_eq!(held.part(&g("0-1-11")), HeldPart::All);
    assert_eq!(held.part(&g("0-1-3")), HeldPart::All);
    // The same sequence number replicated by another server id is the same order.
    assert_eq!(held.part(&g("0-2-10")), HeldPart::All);
    assert_eq!(held.part(&g("0-2-13")), HeldPart::None);
    assert_eq!(held.part(&g("1-5-40")), HeldPart::All);
    assert_eq!(held.part(&g("1-5-41")), HeldPart::None);
    // A domain the tail never showed.
    assert_eq!(held.part(&g("7-1-1")), HeldPart::None);

    let mysql = Held::from_tail([format!("{U1}:9").as_str(), &format!("{U2}:4")], 1).unwrap();
    assert_eq!(mysql.part(&g(&format!("{U1}:9"))), HeldPart::First(1));
    assert_eq!(mysql.part(&g(&format!("{U1}:8"))), HeldPart::All);
    assert_eq!(mysql.part(&g(&format!("{U2}:5"))), HeldPart::None);

    // The newest change carries no GTID (an xid, from before GTIDs were read): positions
    // decide instead.
    assert_eq!(Held::from_tail(["xid:7", "0-1-3"], 1), None);
    assert_eq!(Held::from_tail(std::iter::empty(), 0), None);
    // The topic ends with a truncate after 0-1-12: that transaction is on it whole.
    let held = Held::from_tail(["0-1-12", "0-1-11"], 0).unwrap();
    assert_eq!(held.part(&g("0-1-12")), HeldPart::All);
    assert_eq!(held.part(&g("0-1-13")), HeldPart::None);
}
