//! The validator's subset, keyword by keyword, with the JSON pointer each violation names;
//! and the keywords it refuses at compile time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use strata_schema::{Schema, Val};

fn schema(text: &str) -> Schema {
    Schema::parse(text).unwrap_or_else(|p| panic!("{text}: {p:?}"))
}

/// The first violation as `path: message`, or None.
fn first(s: &Schema, doc: &str) -> Option<String> {
    let v = Val::parse(doc).unwrap();
    s.validate(&v, "/properties").err().map(|v| v.to_string())
}

#[test]
fn types_including_integer_and_arrays_of_types() {
    let s = schema(
        r#"{"type":"object","properties":{
            "post_id":{"type":"integer"},
            "score":{"type":"number"},
            "note":{"type":["string","null"]},
            "flag":{"type":"boolean"},
            "tags":{"type":"array"},
            "meta":{"type":"object"}}}"#,
    );
    assert_eq!(
        first(
            &s,
            r#"{"post_id":1,"score":2,"note":null,"flag":true,"tags":[],"meta":{}}"#
        ),
        None
    );
    // 1.0 is an integer in JSON Schema; 1.5 is not.
    assert_eq!(first(&s, r#"{"post_id":1.0}"#), None);
    assert_eq!(
        first(&s, r#"{"post_id":"42"}"#).unwrap(),
        "/properties/post_id: expected integer, got string"
    );
    assert_eq!(
        first(&s, r#"{"post_id":1.5}"#).unwrap(),
        "/properties/post_id: expected integer, got number"
    );
    assert_eq!(
        first(&s, r#"{"note":3}"#).unwrap(),
        "/properties/note: expected null or string, got integer"
    );
    assert_eq!(
        first(&s, r#"[1]"#).unwrap(),
        "/properties: expected object, got array"
    );
}

#[test]
fn required_and_additional_properties() {
    let closed = schema(
        r#"{"type":"object","required":["post_id"],"additionalProperties":false,
            "properties":{"post_id":{"type":"integer"},"feed":{"type":"string"}}}"#,
    );
    assert_eq!(
        first(&closed, r#"{"feed":"home"}"#).unwrap(),
        "/properties/post_id: required property is missing"
    );
    assert_eq!(
        first(&closed, r#"{"post_id":1,"extra":true}"#).unwrap(),
        "/properties/extra: property is not allowed (additionalProperties is false)"
    );
    let typed_rest = schema(
        r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":{"type":"integer"}}"#,
    );
    assert_eq!(first(&typed_rest, r#"{"a":"x","b":2}"#), None);
    assert_eq!(
        first(&typed_rest, r#"{"a":"x","b":"2"}"#).unwrap(),
        "/properties/b: expected integer, got string"
    );
}

#[test]
fn enum_const_and_numeric_bounds() {
    let s = schema(
        r#"{"properties":{
            "feed":{"enum":["home","following"]},
            "v":{"const":2},
            "n":{"minimum":0,"maximum":10},
            "x":{"exclusiveMinimum":0,"exclusiveMaximum":1}}}"#,
    );
    assert_eq!(first(&s, r#"{"feed":"home","v":2.0,"n":10,"x":0.5}"#), None);
    assert_eq!(
        first(&s, r#"{"feed":"trending"}"#).unwrap(),
        r#"/properties/feed: "trending" is not one of ["home", "following"]"#
    );
    assert_eq!(
        first(&s, r#"{"v":3}"#).unwrap(),
        "/properties/v: expected the constant 2, got 3"
    );
    assert_eq!(
        first(&s, r#"{"n":-1}"#).unwrap(),
        "/properties/n: -1 is less than the minimum 0"
    );
    assert_eq!(
        first(&s, r#"{"n":11}"#).unwrap(),
        "/properties/n: 11 is greater than the maximum 10"
    );
    assert_eq!(
        first(&s, r#"{"x":0}"#).unwrap(),
        "/properties/x: 0 is not greater than the exclusive minimum 0"
    );
    assert_eq!(
        first(&s, r#"{"x":1}"#).unwrap(),
        "/properties/x: 1 is not less than the exclusive maximum 1"
    );
}

#[test]
fn strings_lengths_pattern_and_formats() {
    let s = schema(
        r#"{"properties":{
            "code":{"type":"string","minLength":2,"maxLength":3,"pattern":"^[A-Z]+$"},
            "at":{"type":"string","format":"date-time"},
            "day":{"type":"string","format":"date"}}}"#,
    );
    assert_eq!(
        first(
            &s,
            r#"{"code":"ÉT","at":"2026-12-07T08:00:00Z","day":"2026-12-07"}"#
        )
        .map(|x| x.contains("pattern")),
        Some(true)
    );
    assert_eq!(
        first(
            &s,
            r#"{"code":"AB","at":"2026-12-07T08:00:00+01:00","day":"2026-12-07"}"#
        ),
        None
    );
    // Lengths count characters, not bytes.
    assert_eq!(
        first(&s, r#"{"code":"A"}"#).unwrap(),
        "/properties/code: string of 1 characters is shorter than minLength 2"
    );
    assert_eq!(
        first(&s, r#"{"code":"ABCD"}"#).unwrap(),
        "/properties/code: string of 4 characters is longer than maxLength 3"
    );
    assert_eq!(
        first(&s, r#"{"code":"ab"}"#).unwrap(),
        r#"/properties/code: "ab" does not match the pattern "^[A-Z]+$""#
    );
    assert_eq!(
        first(&s, r#"{"at":"yesterday"}"#).unwrap(),
        r#"/properties/at: "yesterday" is not an RFC 3339 date-time"#
    );
    assert_eq!(
        first(&s, r#"{"day":"2026-13-01"}"#).unwrap(),
        r#"/properties/day: "2026-13-01" is not a date (YYYY-MM-DD)"#
    );
}

#[test]
fn items_bounds_refs_and_pointer_escaping() {
    let s = schema(
        r##"{"$defs":{"tag":{"type":"string","maxLength":5}},
            "properties":{
              "tags":{"type":"array","items":{"$ref":"#/$defs/tag"},"minItems":1,"maxItems":2},
              "a/b~c":{"type":"integer"}}}"##,
    );
    assert_eq!(first(&s, r#"{"tags":["x","y"]}"#), None);
    assert_eq!(
        first(&s, r#"{"tags":["x","toolong"]}"#).unwrap(),
        "/properties/tags/1: string of 7 characters is longer than maxLength 5"
    );
    assert_eq!(
        first(&s, r#"{"tags":[]}"#).unwrap(),
        "/properties/tags: array of 0 items has fewer than minItems 1"
    );
    assert_eq!(
        first(&s, r#"{"tags":["a","b","c"]}"#).unwrap(),
        "/properties/tags: array of 3 items has more than maxItems 2"
    );
    assert_eq!(
        first(&s, r#"{"a/b~c":"x"}"#).unwrap(),
        "/properties/a~1b~0c: expected integer, got string"
    );
    // A recursive definition (a tree) validates nested instances.
    let tree = schema(
        r##"{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{
            "name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}}}}}"##,
    );
    assert_eq!(
        first(
            &tree,
            r#"{"name":"a","children":[{"name":"b","children":[]}]}"#
        ),
        None
    );
    assert_eq!(
        first(&tree, r#"{"name":"a","children":[{"name":1}]}"#).unwrap(),
        "/properties/children/0/name: expected string, got integer"
    );
}

#[test]
fn boolean_schemas_and_several_violations() {
    let s = schema(r#"{"properties":{"never":false,"any":true}}"#);
    assert_eq!(first(&s, r#"{"any":[1]}"#), None);
    assert_eq!(
        first(&s, r#"{"never":1}"#).unwrap(),
        "/properties/never: no value is allowed here"
    );
    let s = schema(r#"{"required":["a","b"],"properties":{"c":{"type":"string"}}}"#);
    let v = Val::parse(r#"{"c":1}"#).unwrap();
    let all = s.violations(&v, "", 10);
    assert_eq!(all.len(), 3, "{all:?}");
}

#[test]
fn unsupported_keywords_are_refused_with_their_location() {
    for (text, expected) in [
        (
            r#"{"anyOf":[{"type":"string"}]}"#,
            r#"#/anyOf: unsupported keyword "anyOf""#,
        ),
        (
            r#"{"properties":{"a":{"oneOf":[]}}}"#,
            r#"#/properties/a/oneOf: unsupported keyword "oneOf""#,
        ),
        (
            r#"{"patternProperties":{"^x":{}}}"#,
            r#"#/patternProperties: unsupported keyword"#,
        ),
        (r#"{"multipleOf":2}"#, "#/multipleOf: unsupported keyword"),
        (
            r#"{"format":"email"}"#,
            r#"#/format: format "email" is not supported"#,
        ),
        (r#"{"type":"text"}"#, "#/type: unknown type \"text\""),
        (r#"{"items":[{"type":"string"}]}"#, "tuple validation"),
        (
            r#"{"$ref":"http://example.com/s.json"}"#,
            "only local references",
        ),
        (r##"{"$ref":"#/$defs/missing"}"##, "no definition"),
        (r#"{"pattern":"("}"#, "#/pattern: not a valid pattern"),
        (r#"{"exclusiveMinimum":true}"#, "draft-4 boolean form"),
        (
            r#"{"minimum":3,"maximum":1}"#,
            "minimum is greater than maximum",
        ),
        (
            r##"{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/a"}}}"##,
            "$ref cycle",
        ),
        ("{", "not valid JSON"),
        ("3", "must be an object or a boolean"),
    ] {
        let problems = Schema::parse(text)
            .err()
            .unwrap_or_else(|| panic!("{text} compiled"));
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{text}: {problems:?} does not mention {expected:?}"
        );
    }
    // Every problem at once.
    let problems = Schema::parse(r#"{"anyOf":[],"not":{},"type":"x"}"#).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    // Annotations are accepted.
    schema(
        r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"t",
            "description":"d","examples":[1],"default":{},"$comment":"c","deprecated":false}"#,
    );
}

#[test]
fn canonical_text_ignores_key_order_and_spacing() {
    let a =
        schema(r#"{"type":"object", "properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#);
    let b =
        schema(r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
    assert_eq!(a.canonical, b.canonical);
}

#[test]
fn check_event_validates_the_part_of_each_call_type() {
    let dir = tempfile::tempdir().unwrap();
    let reg = strata_schema::Registry::open(dir.path(), Default::default()).unwrap();
    reg.register(
        "Post Clicked",
        r#"{"type":"object","required":["post_id"],"properties":{"post_id":{"type":"integer"}}}"#,
    )
    .unwrap();
    reg.register(
        "identify",
        r#"{"type":"object","properties":{"age":{"type":"integer"}}}"#,
    )
    .unwrap();
    let snap = reg.snapshot();
    let check = strata_schema::check_event;
    assert!(check(
        &snap,
        "track",
        Some("Post Clicked"),
        Some(r#"{"post_id":1}"#),
        None
    )
    .is_none());
    let v = check(
        &snap,
        "track",
        Some("Post Clicked"),
        Some(r#"{"post_id":"1"}"#),
        None,
    )
    .unwrap();
    assert_eq!(
        v.to_string(),
        "schema violation (Post Clicked v1): /properties/post_id: expected integer, got string"
    );
    // Absent properties are `{}`: a required property is missing.
    let v = check(&snap, "track", Some("Post Clicked"), None, None).unwrap();
    assert_eq!(v.violation.path, "/properties/post_id");
    // Other events have no schema.
    assert!(check(&snap, "track", Some("Post Viewed"), Some("[]"), None).is_none());
    // identify validates traits, not properties.
    assert!(check(
        &snap,
        "identify",
        None,
        Some(r#"{"age":"x"}"#),
        Some(r#"{"age":3}"#)
    )
    .is_none());
    let v = check(&snap, "identify", None, None, Some(r#"{"age":"x"}"#)).unwrap();
    assert_eq!(
        v.violation.to_string(),
        "/traits/age: expected integer, got string"
    );
}
