//! The registry file: versions and ids, levels, durability across opens, two handles on one
//! file (two processes), and the project's schema files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use strata_schema::config::SubjectSettings;
use strata_schema::registry::VersionRef;
use strata_schema::{project, Compatibility, Error, Registry, SchemasConfig};

const V1: &str = r#"{"type":"object","properties":{"post_id":{"type":"integer"}}}"#;
/// Adds an optional property to an open schema: not backward compatible (it constrains a
/// property V1 left free).
const V2_OPEN: &str =
    r#"{"type":"object","properties":{"post_id":{"type":"integer"},"feed":{"type":"string"}}}"#;
/// Widens post_id: backward compatible.
const V2_WIDER: &str =
    r#"{"type":"object","properties":{"post_id":{"type":["integer","string"]}}}"#;

#[test]
fn versions_ids_and_idempotent_registration() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), SchemasConfig::default()).unwrap();
    let a = reg.register("Post Clicked", V1).unwrap();
    assert_eq!((a.id, a.version, a.created), (1, 1, true));
    // The same schema, spaced differently: the same version, nothing written.
    let again = reg
        .register("Post Clicked", &V1.replace(':', ": "))
        .unwrap();
    assert_eq!((again.id, again.version, again.created), (1, 1, false));
    // The same schema under another subject: the same id, version 1 there.
    let other = reg.register("Post Viewed", V1).unwrap();
    assert_eq!((other.id, other.version), (1, 1));
    let b = reg.register("Post Clicked", V2_WIDER).unwrap();
    assert_eq!((b.id, b.version), (2, 2));
    assert_eq!(reg.subjects(), vec!["Post Clicked", "Post Viewed"]);
    assert_eq!(reg.versions("Post Clicked").unwrap(), vec![1, 2]);
    assert_eq!(
        reg.version("Post Clicked", VersionRef::Latest)
            .unwrap()
            .version,
        2
    );
    assert!(reg.schema_by_id(2).unwrap().contains("string"));
    assert!(matches!(reg.schema_by_id(9), Err(Error::SchemaNotFound(9))));
    assert!(matches!(
        reg.versions("nope"),
        Err(Error::SubjectNotFound(_))
    ));
    assert!(matches!(
        reg.version("Post Clicked", VersionRef::Number(7)),
        Err(Error::VersionNotFound(..))
    ));
    assert!(matches!(
        "0".parse::<VersionRef>(),
        Err(Error::InvalidVersion(_))
    ));

    // Incompatible under the default BACKWARD: refused with the reason, nothing written.
    let e = reg.register(
        "Post Clicked",
        V2_OPEN.replace("integer", "number").as_str(),
    );
    let Err(Error::Incompatible { messages, mode, .. }) = e else {
        panic!("expected an incompatibility")
    };
    assert_eq!(mode, Compatibility::Backward);
    assert!(
        messages.iter().any(|m| m.contains("#/properties/feed")),
        "{messages:?}"
    );
    assert_eq!(reg.versions("Post Clicked").unwrap(), vec![1, 2]);
    // An invalid schema is refused before anything else.
    assert!(matches!(
        reg.register("Post Clicked", r#"{"anyOf":[]}"#),
        Err(Error::InvalidSchema(m)) if m.contains("anyOf")
    ));
    assert!(matches!(
        reg.register(" ", V1),
        Err(Error::InvalidSubject(_))
    ));

    // Durable: a new handle (a restart) reads the same.
    drop(reg);
    let reg = Registry::open(dir.path(), SchemasConfig::default()).unwrap();
    assert_eq!(reg.versions("Post Clicked").unwrap(), vec![1, 2]);
    let snap = reg.snapshot();
    assert_eq!(snap.latest("Post Clicked").unwrap().version, 2);
    assert!(snap.latest("Other").is_none());
}

#[test]
fn levels_global_subject_and_config_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut defaults = SchemasConfig::default();
    defaults.subjects.insert(
        "Free".into(),
        SubjectSettings {
            compatibility: Some(Compatibility::None),
            on_violation: None,
        },
    );
    let reg = Registry::open(dir.path(), defaults).unwrap();
    assert_eq!(reg.global_compatibility(), Compatibility::Backward);
    assert_eq!(reg.subject_compatibility("Free"), Some(Compatibility::None));
    assert_eq!(reg.subject_compatibility("Post Clicked"), None);
    // `Free` takes anything.
    reg.register("Free", V1).unwrap();
    reg.register("Free", r#"{"type":"string"}"#).unwrap();
    // FORWARD on one subject: the open-schema addition is fine there.
    reg.register("Post Clicked", V1).unwrap();
    reg.set_compatibility(Some("Post Clicked"), Compatibility::Forward)
        .unwrap();
    assert_eq!(reg.compatibility("Post Clicked"), Compatibility::Forward);
    reg.register("Post Clicked", V2_OPEN).unwrap();
    // NONE globally, stored: survives a reopen and applies to subjects without their own.
    reg.set_compatibility(None, Compatibility::None).unwrap();
    drop(reg);
    let reg = Registry::open(dir.path(), SchemasConfig::default()).unwrap();
    assert_eq!(reg.global_compatibility(), Compatibility::None);
    assert_eq!(reg.compatibility("Other"), Compatibility::None);
    assert_eq!(reg.compatibility("Post Clicked"), Compatibility::Forward);
    // The compatibility test without registering.
    let msgs = reg
        .test_compatibility("Post Clicked", VersionRef::Latest, r#"{"type":"string"}"#)
        .unwrap();
    assert!(!msgs.is_empty());
    let msgs = reg
        .test_compatibility("Post Clicked", VersionRef::Number(1), V2_OPEN)
        .unwrap();
    assert!(msgs.is_empty(), "{msgs:?}");
}

#[test]
fn another_handle_on_the_same_file_sees_writes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Registry::open(dir.path(), SchemasConfig::default()).unwrap();
    let b = Registry::open(dir.path(), SchemasConfig::default()).unwrap();
    a.register("x", V1).unwrap();
    // b's write re-reads the file under the lock: it builds on a's version, not over it.
    let r = b.register("y", V1).unwrap();
    assert_eq!(r.id, 1);
    assert_eq!(b.subjects(), vec!["x", "y"]);
    // a picks b's write up on a read after its reload interval (2 s). This waits for a state,
    // it does not time anything.
    let start = std::time::Instant::now();
    while a.subjects().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a never reloaded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A corrupt file is an error at open.
    std::fs::write(strata_schema::registry::registry_path(dir.path()), "{").unwrap();
    assert!(matches!(
        Registry::open(dir.path(), SchemasConfig::default()),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn project_schema_files() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = project::schemas_dir(dir.path());
    std::fs::create_dir_all(schemas.join("Post Clicked")).unwrap();
    std::fs::write(schemas.join("Post Clicked/1.json"), V1).unwrap();
    std::fs::write(schemas.join("Post Clicked/2.json"), V2_WIDER).unwrap();
    std::fs::write(schemas.join("identify.json"), r#"{"type":"object"}"#).unwrap();
    std::fs::write(schemas.join("README.md"), "not a schema").unwrap();
    assert!(project::check(&schemas, &SchemasConfig::default()).is_empty());

    let data = tempfile::tempdir().unwrap();
    let reg = Registry::open(data.path(), SchemasConfig::default()).unwrap();
    let done = project::sync(&reg, &schemas).unwrap();
    assert_eq!(done.len(), 3);
    assert_eq!(reg.versions("Post Clicked").unwrap(), vec![1, 2]);
    // Syncing again registers nothing new.
    let again = project::sync(&reg, &schemas).unwrap();
    assert!(again.iter().all(|(_, r)| !r.created));

    // Problems, each with its file: an incompatible next version, an unsupported keyword,
    // invalid JSON, a misnamed version file.
    std::fs::write(schemas.join("Post Clicked/3.json"), V1).unwrap();
    std::fs::create_dir_all(schemas.join("page")).unwrap();
    std::fs::write(schemas.join("page/first.json"), "{}").unwrap();
    std::fs::write(schemas.join("group.json"), r#"{"oneOf":[]}"#).unwrap();
    std::fs::write(schemas.join("screen.json"), "{").unwrap();
    let problems = project::check(&schemas, &SchemasConfig::default());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("first.json") && p.contains("<n>.json")),
        "{problems:?}"
    );
    // Loading stops at naming problems; fix that one and look again.
    std::fs::remove_dir_all(schemas.join("page")).unwrap();
    let problems = project::check(&schemas, &SchemasConfig::default());
    let joined = problems.join("\n");
    assert!(
        joined.contains("3.json: version 3 is not BACKWARD compatible"),
        "{joined}"
    );
    assert!(
        joined.contains("group.json: #/oneOf: unsupported keyword"),
        "{joined}"
    );
    assert!(
        joined.contains("screen.json: the schema is not valid JSON"),
        "{joined}"
    );
    assert_eq!(problems.len(), 3, "{joined}");
}
