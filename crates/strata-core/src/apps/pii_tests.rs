use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn env_none(_: &str) -> Option<String> {
    None
}

fn env_key(k: &str) -> Option<String> {
    (k == KEY_ENV).then(|| KEY.to_string())
}

fn config(paths: &[&str]) -> PiiConfig {
    PiiConfig {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn hash_matches_an_independent_implementation() {
    // Python: hmac.new(b"0123456789abcdef0123456789abcdef", b"alice@example.com",
    //                  hashlib.sha256).hexdigest()
    let key = PiiKey::new(KEY.into()).unwrap();
    assert_eq!(
        key.hash("alice@example.com"),
        "hmac:841240d2a5b6654b3ae21fc4499db7b7867077cdd67c3e16cef1f9843e27d1fa"
    );
}

#[test]
fn hashes_are_stable_keyed_and_recognisable() {
    let key = PiiKey::new(KEY.into()).unwrap();
    let other = PiiKey::new(KEY.replace('0', "x").into()).unwrap();
    let h = key.hash("alice@example.com");
    assert!(is_hash(&h), "{h}");
    assert_eq!(h, key.hash("alice@example.com"));
    assert_ne!(h, key.hash("bob@example.com"));
    assert_ne!(h, other.hash("alice@example.com"));
    // Already hashed: kept; anything else: hashed.
    assert_eq!(key.hash_once(&h), h);
    assert_eq!(key.hash_once("alice@example.com"), h);
    assert!(!is_hash("hmac:XYZ"));
    assert!(!is_hash(&h.to_uppercase()));
    // The key is never printed.
    assert!(!format!("{key:?}").contains("0123"));
}

#[test]
fn keys_shorter_than_32_bytes_are_refused() {
    let e = PiiKey::new(b"short\n".to_vec()).unwrap_err().to_string();
    assert!(e.contains("5 bytes") && e.contains("at least 32"), "{e}");
    // A file's trailing newline does not count, nor change the key.
    let with_newline = PiiKey::new(format!("{KEY}\n").into()).unwrap();
    let without = PiiKey::new(KEY.into()).unwrap();
    assert_eq!(with_newline.hash("x"), without.hash("x"));
}

#[test]
fn paths_parse_or_say_why_not() {
    for ok in [
        "traits.email",
        "context.traits.email",
        "properties.phone_number",
        "properties.customer.contact.email",
        "userId",
        "anonymousId",
    ] {
        let p = PiiPath::parse(ok).unwrap();
        assert_eq!(p.to_string(), ok);
    }
    for (bad, why) in [
        ("", "empty path"),
        ("traits..email", "empty segment"),
        ("traits.email.", "empty segment"),
        ("traits", "name a field inside traits"),
        ("email", "must start with one of"),
        ("Traits.email", "must start with one of"),
        ("userId.x", "nothing below it"),
        ("traits. email", "whitespace"),
        ("traits.e\u{1}mail", "control character"),
    ] {
        let e = PiiPath::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    let deep = vec!["x"; 17].join(".");
    assert!(PiiPath::parse(&format!("traits.{deep}"))
        .unwrap_err()
        .contains("segments"));
}

#[test]
fn paths_for_an_app_are_the_global_ones_then_its_own() {
    let mut c = config(&["traits.email", "userId"]);
    c.apps.insert(
        "shop".into(),
        vec!["properties.phone".into(), "traits.email".into()],
    );
    let shown = |app: &str| -> Vec<String> {
        c.paths_for(app)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(shown("web"), ["traits.email", "userId"]);
    assert_eq!(
        shown("shop"),
        ["traits.email", "userId", "properties.phone"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let data = tempfile::tempdir().unwrap();
    let mut c = config(&["traits..email", "email"]);
    c.apps.insert("shop".into(), vec!["properties".into()]);
    let e = c
        .validate_with(data.path(), &env_none)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("4 problems"), "{e}");
    assert!(
        e.contains("collector.pii.paths[0] \"traits..email\""),
        "{e}"
    );
    assert!(e.contains("collector.pii.paths[1] \"email\""), "{e}");
    assert!(e.contains("collector.pii.apps.shop[0]"), "{e}");
    assert!(e.contains("there is no key"), "{e}");
}

#[test]
fn key_sources_and_their_errors() {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let c = config(&["traits.email"]);

    // From the environment.
    c.validate_with(data.path(), &env_key).unwrap();
    let key = c.key_with(data.path(), &env_key).unwrap().unwrap();

    // From a file outside the data directory: the same bytes are the same key.
    let file = outside.path().join("pii.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let mut from_file = c.clone();
    from_file.key_file = Some(file.clone());
    from_file.validate_with(data.path(), &env_none).unwrap();
    let key2 = from_file.key_with(data.path(), &env_none).unwrap().unwrap();
    assert_eq!(key.hash("a"), key2.hash("a"));

    // Both: ambiguous.
    let e = from_file.validate_with(data.path(), &env_key).unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");

    // Missing file, relative path, too short.
    let mut missing = c.clone();
    missing.key_file = Some(outside.path().join("nope"));
    let e = missing.validate_with(data.path(), &env_none).unwrap_err();
    assert!(e.to_string().contains("cannot be read"), "{e}");
    let mut relative = c.clone();
    relative.key_file = Some("pii.key".into());
    let e = relative.validate_with(data.path(), &env_none).unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");
    std::fs::write(&file, "too short").unwrap();
    let e = from_file.validate_with(data.path(), &env_none).unwrap_err();
    assert!(e.to_string().contains("at least 32"), "{e}");

    // No paths and no key: nothing to check, no key.
    assert!(PiiConfig::default()
        .key_with(data.path(), &env_none)
        .unwrap()
        .is_none());
    PiiConfig::default()
        .validate_with(data.path(), &env_none)
        .unwrap();
}

#[test]
fn a_key_inside_the_data_directory_is_refused_however_it_is_spelled() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("pii.key"), KEY).unwrap();
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(data.join("pii.key"), elsewhere.join("link.key")).unwrap();

    let mut spellings = vec![
        data.join("pii.key"),
        data.join("sub/../pii.key"),
        data.join("./pii.key"),
    ];
    #[cfg(unix)]
    spellings.push(elsewhere.join("link.key"));
    for path in spellings {
        let mut c = config(&["traits.email"]);
        c.key_file = Some(path.clone());
        let e = c.validate_with(&data, &env_none).unwrap_err().to_string();
        assert!(
            e.contains("inside the data directory"),
            "{}: {e}",
            path.display()
        );
    }
    // A data directory spelled with `..` is still the same directory.
    let mut c = config(&["traits.email"]);
    c.key_file = Some(data.join("pii.key"));
    let e = c
        .validate_with(&data.join("sub/.."), &env_none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside the data directory"), "{e}");
}
