use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn key() -> PiiKey {
    PiiKey::new(KEY.into()).unwrap()
}

fn rules(paths: &[&str]) -> Rules {
    let paths: Vec<PiiPath> = paths.iter().map(|p| PiiPath::parse(p).unwrap()).collect();
    Rules::new(&paths)
}

fn h(value: &str) -> String {
    key().hash(value)
}

#[test]
fn nested_paths_are_hashed_in_place_and_the_rest_is_kept_as_sent() {
    let k = key();
    let r = rules(&[
        "traits.email",
        "traits.address.zip",
        "properties.customer.phone",
    ]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        traits: Some(Cow::Borrowed(
            r#"{"name":"A","email":"alice@example.com","address":{"zip":75001,"city":"Paris"}}"#,
        )),
        properties: Some(Cow::Borrowed(
            r#"{"customer":{"phone":"+33 1 23","tier":"gold"},"phone":"kept"}"#,
        )),
        ..Default::default()
    };
    pii.apply(&mut e);
    assert_eq!(
        e.traits.as_deref().unwrap(),
        format!(
            r#"{{"name":"A","email":"{}","address":{{"zip":"{}","city":"Paris"}}}}"#,
            h("alice@example.com"),
            h("75001")
        )
    );
    assert_eq!(
        e.properties.as_deref().unwrap(),
        format!(
            r#"{{"customer":{{"phone":"{}","tier":"gold"}},"phone":"kept"}}"#,
            h("+33 1 23")
        )
    );
}

#[test]
fn text_without_the_keys_stays_borrowed() {
    let k = key();
    let r = rules(&["traits.email", "context.traits.email"]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        traits: Some(Cow::Borrowed(r#"{"name":"A","mail":"x"}"#)),
        // The key is there, but at another place: parsed, nothing changes, still borrowed.
        context: Some(Cow::Borrowed(r#"{"email":"x","traits":{"name":"A"}}"#)),
        properties: Some(Cow::Borrowed(r#"{"email":"not configured"}"#)),
        ..Default::default()
    };
    pii.apply(&mut e);
    assert!(matches!(e.traits, Some(Cow::Borrowed(_))));
    assert!(matches!(e.context, Some(Cow::Borrowed(_))));
    assert!(matches!(e.properties, Some(Cow::Borrowed(_))));
}

#[test]
fn escapes_duplicates_and_compound_values() {
    let k = key();
    let r = rules(&["traits.email", "traits.phones", "traits.profile"]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        // An escaped key still matches; the escaped value is hashed unescaped; a key given twice
        // is hashed twice; arrays and objects are hashed value by value, nulls kept.
        traits: Some(Cow::Borrowed(
            r#"{"em\u0061il":"alice\u0040example.com","email":"b@x","phones":["1",2,null],"profile":{"a":true,"b":{"c":"d"}}}"#,
        )),
        ..Default::default()
    };
    pii.apply(&mut e);
    let got: serde_json::Value = serde_json::from_str(e.traits.as_deref().unwrap()).unwrap();
    let text = e.traits.as_deref().unwrap();
    assert!(!text.contains("alice") && !text.contains("b@x"), "{text}");
    assert!(text.contains(&h("alice@example.com")), "{text}");
    assert!(text.contains(&h("b@x")), "{text}");
    assert_eq!(got["phones"], serde_json::json!([h("1"), h("2"), null]));
    assert_eq!(
        got["profile"],
        serde_json::json!({"a": h("true"), "b": {"c": h("d")}})
    );
}

#[test]
fn hashing_twice_changes_nothing() {
    let k = key();
    let r = rules(&["traits.email", "userId"]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        user_id: Some(Cow::Borrowed("u1")),
        traits: Some(Cow::Borrowed(r#"{"email":"a@b"}"#)),
        ..Default::default()
    };
    pii.apply(&mut e);
    let once = e.clone().into_owned();
    pii.apply(&mut e);
    assert_eq!(e.into_owned(), once);
    assert_eq!(once.user_id.as_deref(), Some(h("u1").as_str()));
}

#[test]
fn columns_copied_from_context_follow_their_path() {
    let k = key();
    let r = rules(&[
        "context.ip",
        "context.page",
        "anonymousId",
        "context.userAgent",
    ]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        user_id: Some(Cow::Borrowed("u1")),
        anonymous_id: Some(Cow::Borrowed("a1")),
        ip: Some(Cow::Borrowed("81.2.69.160")),
        country: Some(Cow::Borrowed("FR")),
        user_agent: Some(Cow::Borrowed("Mozilla/5.0")),
        os: Some(Cow::Borrowed("Linux")),
        page_url: Some(Cow::Borrowed("https://x/?email=a@b")),
        page_path: Some(Cow::Borrowed("/")),
        locale: Some(Cow::Borrowed("fr-FR")),
        context: Some(Cow::Borrowed(
            r#"{"ip":"1.2.3.4","page":{"url":"https://x/?email=a@b","path":"/"},"locale":"fr-FR"}"#,
        )),
        ..Default::default()
    };
    pii.apply(&mut e);
    assert_eq!(e.user_id.as_deref(), Some("u1"));
    assert_eq!(e.anonymous_id.as_deref(), Some(h("a1").as_str()));
    assert_eq!(e.ip.as_deref(), Some(h("81.2.69.160").as_str()));
    assert_eq!(e.user_agent.as_deref(), Some(h("Mozilla/5.0").as_str()));
    assert_eq!(
        e.page_url.as_deref(),
        Some(h("https://x/?email=a@b").as_str())
    );
    assert_eq!(e.page_path.as_deref(), Some(h("/").as_str()));
    // Derived, not copied: kept.
    assert_eq!(e.country.as_deref(), Some("FR"));
    assert_eq!(e.os.as_deref(), Some("Linux"));
    assert_eq!(e.locale.as_deref(), Some("fr-FR"));
    let context = e.context.as_deref().unwrap();
    assert!(
        !context.contains("a@b") && !context.contains("1.2.3.4"),
        "{context}"
    );
    assert!(context.contains("\"locale\":\"fr-FR\""), "{context}");
}

#[test]
fn rejected_raw_text_is_hashed_or_withheld() {
    let k = key();
    let r = rules(&["traits.email", "userId"]);
    let pii = AppPii { key: &k, rules: &r };
    let raw = r#"{"type":"identify","userId":42,"traits":{"email":"a@b"},"timestamp":"bad"}"#;
    let out = pii.raw(raw);
    assert_eq!(
        out,
        format!(
            r#"{{"type":"identify","userId":"{}","traits":{{"email":"{}"}},"timestamp":"bad"}}"#,
            h("42"),
            h("a@b")
        )
    );
    // Nothing configured in it: kept as sent.
    assert!(matches!(pii.raw(r#"{"type":"x"}"#), Cow::Borrowed(_)));
    // Not an object: cannot be searched, so not kept.
    for raw in [r#""a@b""#, "[1]", "{\"traits\":", "12"] {
        assert_eq!(pii.raw(raw), WITHHELD, "{raw}");
    }
}

#[test]
fn per_app_paths_add_to_the_global_ones() {
    let data = tempfile::tempdir().unwrap();
    let config = PiiConfig {
        key_file: None,
        paths: vec!["traits.email".into()],
        apps: [("shop".to_string(), vec!["properties.phone".to_string()])].into(),
    };
    let no_env = |_: &str| None;
    // No key: a setup error, naming the cause.
    let e = Pii::from_config_with(&config, data.path(), &no_env)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no key"), "{e}");
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("k");
    std::fs::write(&file, KEY).unwrap();
    let config = PiiConfig {
        key_file: Some(file),
        ..config
    };
    let pii = Pii::from_config_with(&config, data.path(), &no_env)
        .unwrap()
        .unwrap();
    assert_eq!(pii.app_names(), ["*", "shop"]);
    let mut web = EventView {
        traits: Some(Cow::Borrowed(r#"{"email":"a@b"}"#)),
        properties: Some(Cow::Borrowed(r#"{"phone":"1"}"#)),
        ..Default::default()
    };
    let mut shop = web.clone();
    pii.for_app("web").unwrap().apply(&mut web);
    pii.for_app("shop").unwrap().apply(&mut shop);
    assert_eq!(web.properties.as_deref(), Some(r#"{"phone":"1"}"#));
    assert_eq!(
        shop.properties.as_deref().unwrap(),
        format!(r#"{{"phone":"{}"}}"#, h("1"))
    );
    assert_eq!(web.traits, shop.traits);
    // Nothing configured at all: no PII state.
    assert!(
        Pii::from_config_with(&PiiConfig::default(), data.path(), &no_env)
            .unwrap()
            .is_none()
    );
}

#[test]
fn only_the_hashed_values_change_byte_for_byte() {
    let k = key();
    let r = rules(&["traits.email", "traits.a.b"]);
    let pii = AppPii { key: &k, rules: &r };
    let mut e = EventView {
        traits: Some(Cow::Borrowed(
            "{ \"email\" : \"x@y\" ,\n \"a\": {\"b\" :1.50, \"c\": [1, 2]}, \"z\": \"\\u00e9\" }",
        )),
        ..Default::default()
    };
    pii.apply(&mut e);
    assert_eq!(
        e.traits.as_deref().unwrap(),
        format!(
            "{{ \"email\" : \"{}\" ,\n \"a\": {{\"b\" :\"{}\", \"c\": [1, 2]}}, \"z\": \"\\u00e9\" }}",
            h("x@y"),
            h("1.50")
        )
    );
}
