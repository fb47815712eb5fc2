//! The root config: parsing, environment overrides, every section's validation and the checks
//! that span sections. Section tests that need no root live with their section.

use std::time::Duration;

use strata_bus::config::BusKind;
use strata_cdc::config::{ResumeMode, SnapshotMode, SourceKind};
use strata_collect::config::Role;

use super::*;

/// A PII key (32 bytes of text).
const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn default_toml_matches_defaults() {
    let parsed = Config::from_toml(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn unknown_keys_are_rejected() {
    let err = Config::from_toml("[lake]\nflush_intervall = \"1s\"\n").unwrap_err();
    assert!(err.to_string().contains("flush_intervall"), "{err}");
}

#[test]
fn durations_parse() {
    let c = Config::from_toml("[lake]\nflush_interval = \"250ms\"\n").unwrap();
    assert_eq!(c.lake.flush_interval, Duration::from_millis(250));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure signature
fn env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, "[lake]\nflush_interval = \"5s\"\n").unwrap();
    // A variable name no other test uses, so parallel tests do not see it.
    figment::Jail::expect_with(|jail| {
        jail.set_env("STRATA_LAKE__FLUSH_MAX_ROWS", "77");
        jail.set_env("STRATA_TEST_SOMETHING_ELSE", "1");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.lake.flush_max_rows, 77);
        assert_eq!(c.lake.flush_interval, Duration::from_secs(5));
        assert_eq!(c.data.dir, dir.path().join("data"));
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure signature
fn s3_lake_keys_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, "[lake]\nwarehouse = \"s3://env-bucket/wh\"\n").unwrap();
    figment::Jail::expect_with(|jail| {
        jail.set_env("STRATA_LAKE__S3_ENDPOINT", "http://10.9.8.7:9000");
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("not loopback"), "{err}");
        jail.set_env("STRATA_LAKE__S3_ALLOW_HTTP", "true");
        jail.set_env("AWS_REGION", "eu-central-1");
        jail.set_env("AWS_ACCESS_KEY_ID", "AKIAJAIL");
        jail.set_env("AWS_SECRET_ACCESS_KEY", "jailsecret");
        let c = Config::load(&path).unwrap();
        let s3 = c.lake_s3().unwrap().unwrap();
        assert_eq!(s3.bucket, "env-bucket");
        assert_eq!(s3.endpoint.as_deref(), Some("http://10.9.8.7:9000"));
        assert_eq!(s3.region, "eu-central-1");
        assert_eq!(s3.access_key_id.as_deref(), Some("AKIAJAIL"));
        // A local warehouse has no S3 settings.
        std::fs::write(&path, "[lake]\nwarehouse = \"lake\"\n").unwrap();
        assert!(Config::load(&path).unwrap().lake_s3().unwrap().is_none());
        Ok(())
    });
}

#[test]
fn sources_parse_and_validate() {
    let c = Config::from_toml(
        "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://cdc:secret@127.0.0.1:13306/app\"\ntables = [\"users\", \"posts\"]\ntargets = { posts = \"ods.ods_app_posts\" }\ncommit_interval = \"2s\"\nkeep_changelog = true\n",
    )
    .unwrap();
    let s = &c.sources[0];
    assert_eq!(s.kind(), SourceKind::Mysql);
    assert_eq!(s.snapshot, SnapshotMode::Initial);
    assert_eq!(s.commit_interval, Duration::from_secs(2));
    assert_eq!(s.target("users"), ("ods".into(), "ods_users".into()));
    assert_eq!(s.target("posts"), ("ods".into(), "ods_app_posts".into()));
    assert_eq!(s.topic("users"), "cdc.app.users");

    let base = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\ntables = [\"users\"]\n";
    let err = Config::from_toml(&format!("{base}url = \"postgres://x@h/db\"\n")).unwrap_err();
    assert!(err.to_string().contains("mysql://"), "{err}");
    let err = Config::from_toml(&format!("{base}url = \"mysql://u:pw@h:1\"\n")).unwrap_err();
    assert!(err.to_string().contains("names no database"), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
    let err =
        Config::from_toml(&format!("{base}url = \"mysql://u@h/db\"\nbogus = 1\n")).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn the_resume_mode_is_checked_offline() {
    let base = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\ntables = [\"users\"]\n";
    let c = Config::from_toml(base).unwrap();
    assert_eq!(c.sources[0].as_mysql().unwrap().resume, ResumeMode::Auto);
    for (text, mode) in [
        ("auto", ResumeMode::Auto),
        ("gtid", ResumeMode::Gtid),
        ("position", ResumeMode::Position),
    ] {
        let c = Config::from_toml(&format!("{base}resume = \"{text}\"\n")).unwrap();
        assert_eq!(c.sources[0].as_mysql().unwrap().resume, mode);
    }
    let err = Config::from_toml(&format!("{base}resume = \"gtids\"\n")).unwrap_err();
    assert!(err.to_string().contains("gtids"), "{err}");
    let pg = "[[sources]]\nname = \"a\"\nkind = \"postgres\"\nurl = \"postgres://h/db\"\ntables = [\"t\"]\n";
    let err = Config::from_toml(&format!("{pg}resume = \"gtid\"\n")).unwrap_err();
    assert!(err.to_string().contains("resume is for kind"), "{err}");
}

#[test]
fn postgres_sources_validate_offline() {
    let c = Config::from_toml(
        "[[sources]]\nname = \"Pg\"\nkind = \"postgres\"\nurl = \"postgres://cdc:pw@127.0.0.1:15432/app\"\ntables = [\"users\", \"sales.orders\"]\n",
    )
    .unwrap();
    let s = &c.sources[0];
    assert_eq!(s.kind(), SourceKind::Postgres);
    let s = s.as_postgres().unwrap();
    assert_eq!(s.slot_name(), "strata_pg");
    assert_eq!(s.publication_name(), "strata_pg");
    assert_eq!(s.topic("sales.orders"), "cdc.Pg.sales.orders");
    assert_eq!(
        s.target("sales.orders"),
        ("ods".into(), "ods_sales_orders".into())
    );
    let base = "[[sources]]\nname = \"a\"\nkind = \"postgres\"\ntables = [\"t\"]\n";
    let err = Config::from_toml(&format!("{base}url = \"mysql://h/db\"\n")).unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
    let err = Config::from_toml(&format!("{base}url = \"postgres://u:pw@h:1\"\n")).unwrap_err();
    assert!(err.to_string().contains("names no database"), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
    let err = Config::from_toml(&format!(
        "{base}url = \"postgresql://h/db\"\nslot = \"Bad-Slot\"\n"
    ))
    .unwrap_err();
    assert!(err.to_string().contains("slot"), "{err}");
    let ok = Config::from_toml(&format!(
        "{base}url = \"postgresql://h/db\"\nslot = \"s1\"\npublication = \"p1\"\n"
    ))
    .unwrap();
    assert_eq!(ok.sources[0].as_postgres().unwrap().slot_name(), "s1");
    let err = Config::from_toml(
        "[[sources]]\nname = \"a\"\nkind = \"mysql\"\nurl = \"mysql://h/db\"\ntables = [\"s.t\"]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("table name"), "{err}");
}

#[test]
fn elasticsearch_sources_validate_offline() {
    let base = "[[sources]]\nname = \"search\"\nkind = \"elasticsearch\"\nurl = \"http://127.0.0.1:9200\"\ntables = [\"products\"]\ntimestamp_field = \"updated_at\"\n";
    let c = Config::from_toml(base).unwrap();
    assert_eq!(c.sources[0].kind(), SourceKind::Elasticsearch);
    assert_eq!(
        c.sources[0].target("products"),
        ("ods".into(), "ods_es_products".into())
    );
    // Every problem is reported, one line each, without touching the network.
    let bad = "[[sources]]\nname = \"s2\"\nkind = \"elasticsearch\"\nurl = \"http://h:9200\"\ntables = [\"p\"]\ntimestamp_field = \"ts\"\nusername_env = \"U\"\n";
    let err = Config::from_toml(&format!("{base}{bad}")).unwrap_err();
    assert!(
        err.to_string()
            .contains("username_env and password_env go together"),
        "{err}"
    );
    let err = Config::from_toml(&format!("{base}fields = {{ _source = \"json\" }}\n")).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    // Two sources landing in one table are caught across sources.
    let twin = base.replace("name = \"search\"", "name = \"other\"");
    let err = Config::from_toml(&format!("{base}{twin}")).unwrap_err();
    assert!(
        err.to_string().contains("both land in ods.ods_es_products"),
        "{err}"
    );
}

#[test]
fn roles_split_only_over_kafka() {
    let all = Config::from_toml("").unwrap();
    assert!(Role::ALL.iter().all(|r| all.server.runs(*r)));
    let c = Config::from_toml(
        "[server]\nroles = [\"collector\"]\n[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n",
    )
    .unwrap();
    assert!(c.server.runs(Role::Collector) && !c.server.runs(Role::Sink));
    let err = Config::from_toml("[server]\nroles = [\"collector\", \"sink\"]\n").unwrap_err();
    assert!(err.to_string().contains("embedded bus"), "{err}");
    let err =
        Config::from_toml("[server]\nroles = []\n[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n")
            .unwrap_err();
    assert!(err.to_string().contains("server.roles is empty"), "{err}");
    let err = Config::from_toml("[server]\nroles = [\"writer\"]\n").unwrap_err();
    assert!(err.to_string().contains("collector"), "{err}");
    assert_eq!("cdc".parse::<Role>(), Ok(Role::Cdc));
    assert!("all".parse::<Role>().is_err());
}

#[test]
fn kafka_bus_parses_and_validates() {
    let c = Config::from_toml(
        "[bus]\nkind = \"kafka\"\nbrokers = \"10.0.0.1:9092, kafka-2.internal:9093\"\nreplication_factor = 3\ndelivery_timeout = \"30s\"\n[bus.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n",
    )
    .unwrap();
    assert_eq!(c.bus.kind, BusKind::Kafka);
    assert_eq!(c.bus.replication_factor, 3);
    assert_eq!(c.bus.delivery_timeout, Duration::from_secs(30));
    assert_eq!(c.bus.librdkafka["security.protocol"], "SASL_SSL");

    let err = Config::from_toml("[bus]\nkind = \"kafka\"\n").unwrap_err();
    assert!(err.to_string().contains("bus.brokers"), "{err}");
    let err = Config::from_toml("[bus]\nkind = \"kafka\"\nbrokers = \"localhost\"\n").unwrap_err();
    assert!(err.to_string().contains("HOST:PORT"), "{err}");
    let err = Config::from_toml(
        "[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\n[bus.librdkafka]\nacks = \"1\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("set by Strata"), "{err}");
    let err = Config::from_toml("[bus]\nkind = \"kafka\"\nbrokers = \"h:1\"\nbroker = \"x\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("broker"), "{err}");
    // The embedded bus ignores the Kafka keys.
    assert!(Config::from_toml("[bus]\nbrokers = \"\"\n").is_ok());
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure signature
fn kafka_brokers_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, "[bus]\nkind = \"kafka\"\n").unwrap();
    figment::Jail::expect_with(|jail| {
        jail.set_env("STRATA_BUS__BROKERS", "127.0.0.1:19092");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.bus.brokers, "127.0.0.1:19092");
        Ok(())
    });
}

#[test]
fn invalid_values_name_the_key() {
    let err = Config::from_toml("[bus]\npartitions = 0\n").unwrap_err();
    assert!(err.to_string().contains("bus.partitions"), "{err}");
}

#[test]
fn privacy_overrides_replace_the_default_columns() {
    let c = Config::from_toml(
        "[privacy]\nuser_columns = [\"uid\"]\n[privacy.tables]\n\"ods.ods_users\" = [\"id\"]\n",
    )
    .unwrap();
    assert_eq!(c.privacy.columns_for("ods.ods_users"), ["id".to_string()]);
    assert_eq!(c.privacy.columns_for("ods.ods_event"), ["uid".to_string()]);
}

#[test]
fn privacy_problems_are_reported_together() {
    let err = Config::from_toml(
        "[privacy]\nuser_columns = [\"a\", \"a\", \"\"]\n[privacy.tables]\nbare = [\"x.y\"]\n",
    )
    .unwrap_err()
    .to_string();
    for part in [
        "listed twice",
        "\"\" is not a column",
        "must be namespace.table",
        "\"x.y\"",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let err = Config::from_toml("[privacy]\nuser_colums = []\n").unwrap_err();
    assert!(err.to_string().contains("user_colums"), "{err}");
}

#[test]
fn config_toml_shape() {
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("pii.key");
    std::fs::write(&file, KEY).unwrap();
    let text = format!(
        "[collector.pii]\nkey_file = {:?}\npaths = [\"traits.email\"]\n\
         [collector.pii.apps]\nshop = [\"properties.phone_number\"]\n",
        file.display().to_string()
    );
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.collector.pii.paths, ["traits.email"]);
    assert_eq!(c.collector.pii.apps["shop"], ["properties.phone_number"]);
    let e = Config::from_toml(
        "[collector.pii]\nkey_file = \"/nonexistent/pii.key\"\npaths = [\"traits\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("2 problems") && e.contains("cannot be read"),
        "{e}"
    );
    let e = Config::from_toml("[collector.pii]\nkeyfile = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("keyfile"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    // Three problems in three sections: all three come back, one line each, naming the key.
    let text = "[bus]\npartitions = 0\n[lake]\nflush_max_rows = 0\n[warehouse]\nalert_webhook = \"ftp://x\"\n";
    let c: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(text))
        .extract()
        .unwrap();
    let problems = c.validate_all();
    assert_eq!(
        problems,
        [
            "bus.partitions must be between 1 and 1024",
            "lake.flush_max_rows must be positive",
            "warehouse.alert_webhook must be an http:// or https:// URL",
        ],
        "{problems:?}"
    );
    let err = Config::from_toml(text).unwrap_err().to_string();
    assert!(err.starts_with("3 problems:\n"), "{err}");
    for p in &problems {
        assert!(err.lines().any(|l| l == p), "{p}: {err}");
    }
    // Within a section too, and cross-section checks join them.
    let text = "[server]\nmax_body_bytes = 10\nmax_in_flight = 0\n";
    let err = Config::from_toml(text).unwrap_err().to_string();
    for p in [
        "server.max_body_bytes must be at least 1024",
        "server.max_in_flight must be positive",
        "collector.max_event_bytes cannot exceed server.max_body_bytes",
    ] {
        assert!(err.lines().any(|l| l == p), "{p}: {err}");
    }
    assert!(Config::default().validate_all().is_empty());
}

#[test]
fn an_empty_role_list_is_one_problem_not_two() {
    let err = Config::from_toml("[server]\nroles = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.roles is empty"), "{err}");
    assert!(!err.contains("embedded bus"), "{err}");
}

#[test]
fn pulls_are_checked_with_the_rest() {
    let text = "[[sources]]\nname = \"app\"\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\ntables = [\"orders\"]\n\
                [[pulls]]\nname = \"orders\"\nschedule = \"0 * * * *\"\nurl = \"https://x/?from={start}\"\ntable = \"ods.ods_orders\"\n\
                [[pulls]]\nname = \"bad\"\nschedule = \"daily\"\nurl = \"https://x/\"\n";
    let err = Config::from_toml(text).unwrap_err().to_string();
    assert!(err.starts_with("2 problems:\n"), "{err}");
    assert!(
        err.contains("pulls.orders and sources app.orders both write ods.ods_orders (a pull and a CDC table)"),
        "{err}"
    );
    assert!(
        err.contains("pulls.bad.schedule: \"daily\": a cron expression has 5 fields"),
        "{err}"
    );
    let ok = Config::from_toml(
        "[[pulls]]\nname = \"orders\"\nschedule = \"0 * * * *\"\nurl = \"https://x/?from={start}\"\nheaders = { Authorization = \"Bearer ${env:T}\" }\n",
    )
    .unwrap();
    assert_eq!(
        ok.pulls[0].table_ident().unwrap().to_string(),
        "ods.ods_pull_orders"
    );
}
