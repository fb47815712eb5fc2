//! Each compatibility rule, in both directions, and the modes built on them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use strata_schema::compat::{check, covers};
use strata_schema::{Compatibility, Schema};

fn s(text: &str) -> Schema {
    Schema::parse(text).unwrap_or_else(|p| panic!("{text}: {p:?}"))
}

/// Whether `new` may follow `old` under BACKWARD (new covers old), with the reasons.
fn backward(old: &str, new: &str) -> Vec<String> {
    covers(&s(new), &s(old))
}

fn ok(old: &str, new: &str) {
    let p = backward(old, new);
    assert!(
        p.is_empty(),
        "{old} → {new} should be backward compatible: {p:?}"
    );
}

fn refused(old: &str, new: &str, mentions: &str) {
    let p = backward(old, new);
    assert!(
        p.iter().any(|m| m.contains(mentions)),
        "{old} → {new} should be refused mentioning {mentions:?}: {p:?}"
    );
}

const BASE: &str = r#"{"type":"object","required":["post_id"],"properties":{"post_id":{"type":"integer"},"feed":{"type":"string"}}}"#;

#[test]
fn same_and_reordered_schemas_are_compatible() {
    ok(BASE, BASE);
    ok(
        BASE,
        r#"{"properties":{"feed":{"type":"string"},"post_id":{"type":"integer"}},"required":["post_id"],"type":"object"}"#,
    );
}

#[test]
fn required_properties() {
    // Adding a required property: old events without it break.
    refused(
        BASE,
        r#"{"type":"object","required":["post_id","feed"],"properties":{"post_id":{"type":"integer"},"feed":{"type":"string"}}}"#,
        "#/properties/feed: property became required",
    );
    // Dropping a requirement widens.
    ok(
        BASE,
        r#"{"type":"object","properties":{"post_id":{"type":"integer"},"feed":{"type":"string"}}}"#,
    );
}

#[test]
fn types_narrowed_or_widened() {
    refused(
        r#"{"properties":{"x":{"type":"number"}}}"#,
        r#"{"properties":{"x":{"type":"integer"}}}"#,
        "type number is no longer allowed",
    );
    ok(
        r#"{"properties":{"x":{"type":"integer"}}}"#,
        r#"{"properties":{"x":{"type":"number"}}}"#,
    );
    ok(
        r#"{"properties":{"x":{"type":"string"}}}"#,
        r#"{"properties":{"x":{"type":["string","null"]}}}"#,
    );
    refused(
        r#"{"properties":{"x":{"type":["string","null"]}}}"#,
        r#"{"properties":{"x":{"type":"string"}}}"#,
        "#/properties/x: type null is no longer allowed",
    );
    // Constraining a free property: one problem naming every type it loses.
    refused(
        r#"{"properties":{"x":{}}}"#,
        r#"{"properties":{"x":{"type":"string"}}}"#,
        "#/properties/x: types null, boolean, integer, number, array, object are no longer allowed",
    );
}

#[test]
fn enums_and_consts() {
    refused(
        r#"{"properties":{"f":{"enum":["home","following","trending"]}}}"#,
        r#"{"properties":{"f":{"enum":["home","following"]}}}"#,
        r#"value "trending" is no longer accepted"#,
    );
    ok(
        r#"{"properties":{"f":{"enum":["home"]}}}"#,
        r#"{"properties":{"f":{"enum":["home","following"]}}}"#,
    );
    // An enum can be covered by a type.
    ok(
        r#"{"properties":{"f":{"enum":["home",1]}}}"#,
        r#"{"properties":{"f":{"type":["string","integer"]}}}"#,
    );
    refused(
        r#"{"properties":{"f":{"type":"string"}}}"#,
        r#"{"properties":{"f":{"enum":["home"]}}}"#,
        "enum added",
    );
    refused(
        r#"{"properties":{"f":{"type":"string"}}}"#,
        r#"{"properties":{"f":{"const":"home"}}}"#,
        "const added",
    );
}

#[test]
fn bounds_only_widen() {
    refused(
        r#"{"properties":{"n":{"type":"integer","minimum":0}}}"#,
        r#"{"properties":{"n":{"type":"integer","minimum":1}}}"#,
        "lower bound raised",
    );
    ok(
        r#"{"properties":{"n":{"type":"integer","minimum":1}}}"#,
        r#"{"properties":{"n":{"type":"integer","minimum":0}}}"#,
    );
    refused(
        r#"{"properties":{"n":{"type":"integer","maximum":10}}}"#,
        r#"{"properties":{"n":{"type":"integer","exclusiveMaximum":10}}}"#,
        "upper bound lowered",
    );
    ok(
        r#"{"properties":{"n":{"type":"integer","exclusiveMaximum":10}}}"#,
        r#"{"properties":{"n":{"type":"integer","maximum":10}}}"#,
    );
    refused(
        r#"{"properties":{"n":{"type":"integer"}}}"#,
        r#"{"properties":{"n":{"type":"integer","maximum":10}}}"#,
        "upper bound lowered or added",
    );
    refused(
        r#"{"properties":{"s":{"type":"string","maxLength":10}}}"#,
        r#"{"properties":{"s":{"type":"string","maxLength":5}}}"#,
        "maxLength lowered",
    );
    refused(
        r#"{"properties":{"s":{"type":"string"}}}"#,
        r#"{"properties":{"s":{"type":"string","minLength":1}}}"#,
        "minLength raised",
    );
    refused(
        r#"{"properties":{"s":{"type":"string"}}}"#,
        r#"{"properties":{"s":{"type":"string","pattern":"^a"}}}"#,
        "pattern",
    );
    refused(
        r#"{"properties":{"s":{"type":"string"}}}"#,
        r#"{"properties":{"s":{"type":"string","format":"date"}}}"#,
        "format",
    );
    refused(
        r#"{"properties":{"a":{"type":"array","items":{"type":"number"}}}}"#,
        r#"{"properties":{"a":{"type":"array","items":{"type":"integer"}}}}"#,
        "#/properties/a/items: type number is no longer allowed",
    );
    refused(
        r#"{"properties":{"a":{"type":"array"}}}"#,
        r#"{"properties":{"a":{"type":"array","maxItems":3}}}"#,
        "maxItems lowered",
    );
    // A bound on a type the old schema never allowed there changes nothing.
    ok(
        r#"{"properties":{"s":{"type":"string"}}}"#,
        r#"{"properties":{"s":{"type":"string","minimum":3}}}"#,
    );
}

#[test]
fn closed_and_open_objects() {
    let closed = r#"{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"},"b":{"type":"integer"}}}"#;
    // Removing a property from a closed schema: old events with it break.
    refused(
        closed,
        r#"{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}}"#,
        "#/properties/b: property removed from a closed schema",
    );
    // Adding an optional property to a closed schema is fine.
    ok(
        closed,
        r#"{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"boolean"}}}"#,
    );
    // Constraining a property an open schema left free.
    refused(
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","properties":{"a":{"type":"string"},"c":{"type":"boolean"}}}"#,
        "#/properties/c: type",
    );
    // Closing an open schema.
    refused(
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}}"#,
        "the schema was closed",
    );
    // Opening a closed one widens.
    ok(
        closed,
        r#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}"#,
    );
    // Dropping a property from an open schema widens.
    ok(
        r#"{"type":"object","properties":{"a":{"type":"string"}}}"#,
        r#"{"type":"object"}"#,
    );
}

#[test]
fn recursive_refs_compare() {
    let tree = r##"{"$ref":"#/$defs/n","$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/n"}}}}}}"##;
    let wider = r##"{"$ref":"#/$defs/n","$defs":{"n":{"type":"object","properties":{"v":{"type":"number"},"kids":{"type":"array","items":{"$ref":"#/$defs/n"}}}}}}"##;
    ok(tree, wider);
    refused(wider, tree, "type number is no longer allowed");
}

#[test]
fn modes() {
    let v1 = s(BASE);
    let v2 = s(
        r#"{"type":"object","required":["post_id"],"properties":{"post_id":{"type":"integer"},"feed":{"type":"string"},"pos":{"type":"integer"}}}"#,
    );
    // v2 constrains `pos`, which v1 left free: not backward. v1 reads every v2 event: forward.
    let narrower = &v2;
    assert!(!check(Compatibility::Backward, narrower, &[(1, &v1)]).is_empty());
    assert!(check(Compatibility::Forward, narrower, &[(1, &v1)]).is_empty());
    assert!(!check(Compatibility::Full, narrower, &[(1, &v1)]).is_empty());
    assert!(check(Compatibility::None, narrower, &[(1, &v1)]).is_empty());
    let msg = check(Compatibility::Backward, narrower, &[(1, &v1)]).join("\n");
    assert!(msg.contains("version 1"), "{msg}");

    // Transitive: v3 is compatible with v2 but not with v1.
    let a = s(r#"{"properties":{"n":{"type":"integer","minimum":0}}}"#);
    let b = s(r#"{"properties":{"n":{"type":"integer","minimum":5}}}"#);
    let c = s(r#"{"properties":{"n":{"type":"integer","minimum":3}}}"#);
    // BACKWARD: c covers b (3 ≤ 5) but not a (0 < 3).
    assert!(check(Compatibility::Backward, &c, &[(1, &a), (2, &b)]).is_empty());
    let t = check(Compatibility::BackwardTransitive, &c, &[(1, &a), (2, &b)]);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].contains("version 1"), "{t:?}");
    assert!(!check(Compatibility::FullTransitive, &c, &[(1, &a), (2, &b)]).is_empty());
    // FORWARD_TRANSITIVE: every earlier version reads the new one's events (b is the narrowest).
    assert!(check(Compatibility::ForwardTransitive, &b, &[(1, &a), (2, &c)]).is_empty());
    assert!(!check(Compatibility::ForwardTransitive, &a, &[(1, &b), (2, &c)]).is_empty());
    assert_eq!(
        "full_transitive".parse::<Compatibility>().unwrap(),
        Compatibility::FullTransitive
    );
    assert!("sideways".parse::<Compatibility>().is_err());
}
