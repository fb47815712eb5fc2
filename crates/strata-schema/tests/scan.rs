//! The fast path (`Schema::accepts`, checking while parsing) against the tree walker
//! (`Val::parse` + `Schema::is_valid`): on every instance, hand-written and generated, both
//! must give the same verdict. Not-JSON text counts as invalid for both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use strata_schema::{Schema, Val};

fn schema(text: &str) -> Schema {
    Schema::parse(text).unwrap_or_else(|p| panic!("{text}: {p:?}"))
}

/// The walker's verdict (the reference).
fn walker(s: &Schema, doc: &str) -> bool {
    Val::parse(doc).is_ok_and(|v| s.is_valid(&v))
}

/// Asserts both paths agree on `doc`; returns the verdict.
fn agree(s: &Schema, schema_text: &str, doc: &str) -> bool {
    let slow = walker(s, doc);
    let fast = s.accepts(doc);
    assert_eq!(
        fast, slow,
        "fast path says {fast}, walker says {slow}\nschema: {schema_text}\ninstance: {doc}"
    );
    slow
}

/// One schema, its properties with values that often pass, and hand-written instances with
/// the verdict the walker must give.
struct Case {
    schema: &'static str,
    keys: &'static [(&'static str, &'static [&'static str])],
    fixed: &'static [(&'static str, bool)],
}

const PAD: &str = "\"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehen\"";

const CASES: &[Case] = &[
    // The ingest benchmark's schema.
    Case {
        schema: r##"{"type":"object","required":["post_id","feed"],"properties":{
            "post_id":{"type":"integer","minimum":0},"dwell_ms":{"type":"integer","minimum":0},
            "position":{"type":"integer"},"feed":{"type":"string","enum":["home","following","trending"]}}}"##,
        keys: &[
            ("post_id", &["42", "0", "1.0", "7e1"]),
            ("feed", &["\"home\"", "\"trending\"", "\"ho\\u006de\""]),
            ("dwell_ms", &["1300", "0"]),
            ("position", &["3", "-2"]),
            ("pad", &[PAD]),
        ],
        fixed: &[
            (r##"{"post_id":1,"feed":"home"}"##, true),
            (r##"{"post_id":1.0,"feed":"home","dwell_ms":2.0}"##, true),
            (r##"{"post_id":1.5,"feed":"home"}"##, false),
            (r##"{"post_id":-1,"feed":"home"}"##, false),
            (r##"{"post_id":-0.0,"feed":"home"}"##, true),
            (r##"{"post_id":1,"feed":"Home"}"##, false),
            (r##"{"post_id":1}"##, false),
            (r##"{"feed":"home","post_id":"1"}"##, false),
            // Escaped key and value: the same names once unescaped.
            (r##"{"\u0070ost_id":1,"fe\u0065d":"h\u006fme"}"##, true),
            // Duplicate keys: every value is checked.
            (r##"{"post_id":1,"feed":"home","post_id":"x"}"##, false),
            (r##"{"post_id":"x","feed":"home","post_id":1}"##, false),
            (r##"{"post_id":2,"post_id":3,"feed":"home"}"##, true),
            (r##"{"post_id":18446744073709551615,"feed":"home"}"##, true),
            (
                r##"{"post_id":1,"feed":"home","extra":{"deep":[1,{"x":null}]}}"##,
                true,
            ),
            // Not JSON anywhere, even in a value no keyword looks at.
            (r##"{"post_id":1,"feed":"home","x":1e400}"##, false),
            (r##"{"post_id":1,"feed":"home","x":"\ud800"}"##, false),
            (r##"{"post_id":1,"feed":"home","x":[1,]}"##, false),
            (r##"{"post_id":1,"feed":"home"} trailing"##, false),
            (r##"{"post_id":1,"feed":"home"}  "##, true),
            (r##"{"post_id":1,"feed":"home""##, false),
            ("", false),
            ("[]", false),
            ("null", false),
        ],
    },
    // Strings: lengths in characters, pattern, formats, type lists.
    Case {
        schema: r##"{"type":"object","properties":{
            "s":{"type":"string","minLength":2,"maxLength":3},
            "m":{"maxLength":2},
            "n":{"minLength":2},
            "p":{"type":"string","pattern":"^user-[0-9]+$"},
            "q":{"pattern":"é"},
            "dt":{"type":"string","format":"date-time"},
            "d":{"format":"date"},
            "o":{"type":["string","null"],"maxLength":1}}}"##,
        keys: &[
            ("s", &["\"ab\"", "\"ééé\"", "\"😀😀\"", "\"a\\u00e9\""]),
            ("m", &["\"é\"", "3", "\"ab\""]),
            ("n", &["\"ab\"", "[1]"]),
            ("p", &["\"user-42\"", "\"user-\\u0034\""]),
            ("q", &["\"café\"", "\"caf\\u00e9\""]),
            (
                "dt",
                &[
                    "\"2026-11-22T10:00:00Z\"",
                    "\"2026-11-22T10:00:00.123+01:00\"",
                ],
            ),
            ("d", &["\"2026-11-22\"", "7"]),
            ("o", &["null", "\"x\"", "\"é\""]),
        ],
        fixed: &[
            (r##"{"s":"ééé"}"##, true),
            (r##"{"s":"éééé"}"##, false),
            (r##"{"s":"é"}"##, false),
            (r##"{"s":"😀😀😀"}"##, true),
            (r##"{"s":"\ud83d\ude00\ud83d\ude00"}"##, true),
            (r##"{"s":"a\"b"}"##, true),
            (r##"{"s":"a\"bc"}"##, false),
            (r##"{"m":"ééé"}"##, false),
            (r##"{"m":"éé"}"##, true),
            (r##"{"n":"é"}"##, false),
            (r##"{"p":"user-x"}"##, false),
            (r##"{"p":"xuser-1"}"##, false),
            (r##"{"q":"xéx"}"##, true),
            (r##"{"dt":"2026-11-22"}"##, false),
            (r##"{"dt":"2026-11-22T25:00:00Z"}"##, false),
            (r##"{"d":"2026-02-30"}"##, false),
            (r##"{"d":"2026-2-3"}"##, false),
            (r##"{"o":"ab"}"##, false),
            (r##"{"o":1}"##, false),
        ],
    },
    // Numbers: bounds, exclusive bounds, integer vs number, const by value.
    Case {
        schema: r##"{"properties":{
            "i":{"type":"integer","minimum":-5,"maximum":10},
            "x":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1},
            "c":{"const":1},
            "e":{"enum":[1,"1",null,true,2.5]},
            "b":{"type":"boolean"},
            "z":{"type":"null"}}}"##,
        keys: &[
            ("i", &["10", "-5", "3.0", "1e1"]),
            ("x", &["0.5", "0.999", "1e-3"]),
            ("c", &["1", "1.0", "1e0"]),
            ("e", &["1", "\"1\"", "null", "true", "2.5", "1.0"]),
            ("b", &["true", "false"]),
            ("z", &["null"]),
        ],
        fixed: &[
            (r##"{"i":11}"##, false),
            (r##"{"i":-6}"##, false),
            (r##"{"i":10.5}"##, false),
            (r##"{"x":0}"##, false),
            (r##"{"x":1}"##, false),
            (r##"{"x":1.0}"##, false),
            (r##"{"c":2}"##, false),
            (r##"{"c":"1"}"##, false),
            (r##"{"e":false}"##, false),
            (r##"{"e":[1]}"##, false),
            (r##"{"e":{"a":1}}"##, false),
            (r##"{"i":-9223372036854775808}"##, false),
            (r##"{"i":18446744073709551615}"##, false),
        ],
    },
    // Arrays: items, bounds, arrays of objects.
    Case {
        schema: r##"{"type":"object","properties":{
            "tags":{"type":"array","items":{"type":"string","maxLength":4},"minItems":1,"maxItems":3},
            "rows":{"items":{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}},
            "any":{"type":"array","items":true},
            "none":{"type":"array","items":false}}}"##,
        keys: &[
            (
                "tags",
                &["[\"a\"]", "[\"a\",\"bb\",\"éééé\"]", "[\"t\\u0061g\"]"],
            ),
            ("rows", &["[{\"id\":1},{\"id\":2.0,\"x\":[]}]", "[]"]),
            ("any", &["[1,\"x\",null,{}]", "[]"]),
            ("none", &["[]"]),
        ],
        fixed: &[
            (r##"{"tags":[]}"##, false),
            (r##"{"tags":["a","b","c","d"]}"##, false),
            (r##"{"tags":["ééééé"]}"##, false),
            (r##"{"tags":[1]}"##, false),
            (r##"{"rows":[{"id":1},{}]}"##, false),
            (r##"{"rows":[{"id":1},{"id":"1"}]}"##, false),
            (r##"{"rows":"x"}"##, true),
            (r##"{"none":[1]}"##, false),
            (r##"{"any":[[[[1]]]]}"##, true),
        ],
    },
    // Closed objects, typed additional properties, escaped property names, boolean schemas.
    Case {
        schema: r##"{"type":"object","additionalProperties":false,"required":["a/b"],"properties":{
            "a/b":{"type":"integer"},"t~x":{"type":"string"},"é":true,"f":false,
            "rest":{"type":"object","additionalProperties":{"type":"integer"},"properties":{"s":{"type":"string"}}},
            "open":{"additionalProperties":true},
            "emp":{"additionalProperties":{}}}}"##,
        keys: &[
            ("a/b", &["1"]),
            ("t~x", &["\"x\""]),
            ("é", &["[1]", "null"]),
            (
                "rest",
                &["{\"s\":\"x\",\"n\":1}", "{}", "{\"n\":2,\"n\":3.0}"],
            ),
            ("open", &["{\"q\":[1]}"]),
            ("emp", &["{\"q\":{\"r\":1}}"]),
        ],
        fixed: &[
            (r##"{"a/b":1,"f":null}"##, false),
            (r##"{"a/b":1,"other":null}"##, false),
            (r##"{"a\/b":1}"##, true),
            (r##"{"\u00e9":1,"a/b":1}"##, true),
            (r##"{"t~x":"x"}"##, false),
            (r##"{"a/b":1,"rest":{"n":"1"}}"##, false),
            (r##"{"a/b":1,"rest":{"s":1}}"##, false),
        ],
    },
    // enum and const over objects and arrays (the fast path hands those to the walker).
    Case {
        schema: r##"{"type":"object","properties":{
            "o":{"enum":[{"a":1,"b":[1,2]},[1,"x"],null,3]},
            "c":{"const":{"k":1.0,"l":{"m":"n"}}},
            "t":{"type":"array","const":[]}}}"##,
        keys: &[
            (
                "o",
                &[
                    "{\"b\":[1,2.0],\"a\":1}",
                    "[1,\"x\"]",
                    "null",
                    "3.0",
                    "{\"a\":1}",
                ],
            ),
            (
                "c",
                &[
                    "{\"l\":{\"m\":\"n\"},\"k\":1}",
                    "{\"k\":1,\"l\":{\"m\":\"\\u006e\"}}",
                ],
            ),
            ("t", &["[]", "[1]"]),
        ],
        fixed: &[
            (r##"{"o":{"a":1,"b":[2,1]}}"##, false),
            (r##"{"o":{"a":1,"b":[1,2],"c":0}}"##, false),
            (r##"{"o":{"a":1,"a":1}}"##, false),
            (r##"{"o":[1,"x",2]}"##, false),
            (r##"{"c":{"k":1,"l":{"m":"n"},"k":1}}"##, false),
            (r##"{"t":{}}"##, false),
        ],
    },
    // $ref: alone (followed), with siblings (walker), chains, recursion.
    Case {
        schema: r##"{"$defs":{
                "id":{"type":"integer","minimum":1},
                "alias":{"$ref":"#/$defs/id"},
                "node":{"type":"object","required":["v"],"properties":{"v":{"$ref":"#/$defs/alias"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}}},
                "loose":{"$ref":"#/$defs/id","additionalProperties":true}},
            "type":"object","properties":{
                "a":{"$ref":"#/$defs/alias"},
                "b":{"$ref":"#/$defs/id","maximum":5},
                "tree":{"$ref":"#/$defs/node"},
                "l":{"$ref":"#/$defs/loose"},
                "obj":{"$ref":"#/$defs/node","properties":{"w":{"type":"string"}}}}}"##,
        keys: &[
            ("a", &["1", "2.0"]),
            ("b", &["3", "5"]),
            (
                "tree",
                &[
                    "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}",
                    "{\"v\":1}",
                ],
            ),
            ("l", &["7"]),
            ("obj", &["{\"v\":1,\"w\":\"x\"}", "{\"v\":1}"]),
        ],
        fixed: &[
            (r##"{"a":0}"##, false),
            (r##"{"b":6}"##, false),
            (r##"{"b":0}"##, false),
            (r##"{"tree":{"v":1,"kids":[{"v":0}]}}"##, false),
            (r##"{"tree":{"v":1,"kids":[{"kids":[]}]}}"##, false),
            (r##"{"obj":{"v":1,"w":1}}"##, false),
            (r##"{"obj":{"w":"x"}}"##, false),
        ],
    },
    // More than 64 required names (the fast path's long form of its seen-set).
    Case {
        schema: LONG_REQUIRED,
        keys: &[],
        fixed: &[],
    },
    // Boolean schemas at the root.
    Case {
        schema: "true",
        keys: &[],
        fixed: &[("1", true), ("[{}]", true), ("\"\\ud800\"", false)],
    },
    Case {
        schema: "false",
        keys: &[],
        fixed: &[("1", false), ("{}", false)],
    },
];

const LONG_REQUIRED: &str = r##"{"type":"object","required":["r0","r1","r2","r3","r4","r5","r6","r7","r8","r9","r10","r11","r12","r13","r14","r15","r16","r17","r18","r19","r20","r21","r22","r23","r24","r25","r26","r27","r28","r29","r30","r31","r32","r33","r34","r35","r36","r37","r38","r39","r40","r41","r42","r43","r44","r45","r46","r47","r48","r49","r50","r51","r52","r53","r54","r55","r56","r57","r58","r59","r60","r61","r62","r63","r64","r65","r66","r67","r68","r69"]}"##;

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, in_n: usize) -> bool {
        self.below(in_n) == 0
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "1.0",
    "1.5",
    "-0",
    "-0.0",
    "0.5",
    "1e2",
    "2.5e-3",
    "3",
    "5",
    "6",
    "10",
    "11",
    "42",
    "-7",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "9223372036854775808",
];

const STRINGS: &[&str] = &[
    "\"\"",
    "\"x\"",
    "\"home\"",
    "\"ho\\u006de\"",
    "\"é\"",
    "\"ééé\"",
    "\"😀😀\"",
    "\"\\ud83d\\ude00\"",
    "\"abcd\"",
    "\"a\\\"b\"",
    "\"tab\\there\"",
    "\"\\u00e9t\\u00e9\"",
    "\"user-42\"",
    "\"2026-11-22T10:00:00Z\"",
    "\"2026-11-22\"",
    "\"2026-02-30\"",
];

/// Rare text that is not JSON (both paths must refuse it).
const BROKEN: &[&str] = &[
    "1e400",
    "\"\\ud800\"",
    "[1,]",
    "{\"a\" 1}",
    "tru",
    "\"\\x\"",
];

const OTHER_KEYS: &[&str] = &["x", "a", "v", "k", "extra", "a/b", "é", "r1", "kids", "n"];

/// A JSON key for `name`: sometimes with its first character written as a `\u` escape.
fn key(rng: &mut Rng, name: &str) -> String {
    let quoted = serde_json::to_string(name).unwrap();
    match name.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() && rng.chance(4) => {
            format!("\"\\u{:04x}{}", c as u32, &quoted[2..])
        }
        _ => quoted,
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> String {
    if rng.chance(300) {
        return rng.pick(BROKEN).to_string();
    }
    let kinds = if depth >= 3 { 7 } else { 10 };
    match rng.below(kinds) {
        0 => "null".to_string(),
        1 => rng.pick(&["true", "false"]).to_string(),
        2 | 3 => rng.pick(NUMBERS).to_string(),
        4..=6 => rng.pick(STRINGS).to_string(),
        7 => {
            let items: Vec<String> = (0..rng.below(5))
                .map(|_| random_value(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let pairs: Vec<String> = (0..rng.below(5))
                .map(|_| {
                    let name = rng.pick(OTHER_KEYS);
                    format!("{}:{}", key(rng, name), random_value(rng, depth + 1))
                })
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
    }
}

/// An instance shaped by the case: most known properties present, often with a value that
/// passes, sometimes twice, sometimes with strangers; now and then not an object at all.
fn instance(rng: &mut Rng, case: &Case) -> String {
    if rng.chance(25) {
        return random_value(rng, 0);
    }
    let mut pairs = Vec::new();
    for (name, good) in case.keys {
        for _ in 0..if rng.chance(10) { 2 } else { 1 } {
            if rng.chance(5) {
                continue;
            }
            let value = if !good.is_empty() && !rng.chance(3) {
                rng.pick(good).to_string()
            } else {
                random_value(rng, 1)
            };
            pairs.push(format!("{}:{value}", key(rng, name)));
        }
    }
    if rng.chance(4) {
        let name = rng.pick(OTHER_KEYS);
        let extra = format!("{}:{}", key(rng, name), random_value(rng, 1));
        let at = rng.below(pairs.len() + 1);
        pairs.insert(at, extra);
    }
    format!("{{{}}}", pairs.join(","))
}

#[test]
fn fast_path_agrees_with_the_walker_on_hand_written_instances() {
    for case in CASES {
        let s = schema(case.schema);
        for (doc, expected) in case.fixed {
            let verdict = agree(&s, case.schema, doc);
            assert_eq!(verdict, *expected, "{doc} under {}", case.schema);
        }
        // `{}`, what the collector validates when the part is absent.
        agree(&s, case.schema, "{}");
    }
}

#[test]
fn fast_path_agrees_with_the_walker_on_generated_instances() {
    let mut rng = Rng(0x5eed_0054);
    for case in CASES.iter().filter(|c| !c.keys.is_empty()) {
        let s = schema(case.schema);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..3_000 {
            let doc = instance(&mut rng, case);
            if agree(&s, case.schema, &doc) {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // Both verdicts occur often.
        assert!(valid > 50, "{valid} valid instances of {}", case.schema);
        assert!(
            invalid > 50,
            "{invalid} invalid instances of {}",
            case.schema
        );
    }
}

#[test]
fn more_than_64_required_names() {
    let s = schema(LONG_REQUIRED);
    let all: Vec<String> = (0..70).map(|i| format!("\"r{i}\":{i}")).collect();
    assert!(agree(&s, LONG_REQUIRED, &format!("{{{}}}", all.join(","))));
    for missing in [0, 63, 64, 69] {
        let some: Vec<&String> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, p)| p)
            .collect();
        let doc = format!(
            "{{{},\"r{}x\":1}}",
            some.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            missing
        );
        assert!(!agree(&s, LONG_REQUIRED, &doc), "r{missing} missing");
    }
}

/// The depth guard: a recursive schema over a deep instance fails at the same depth on both
/// paths, and a def that refers to itself with a constraint beside the ref fails everything.
#[test]
fn depth_guard_at_the_same_place() {
    let text = r##"{"$defs":{"n":{"type":"object","properties":{"c":{"$ref":"#/$defs/n"}}}},"$ref":"#/$defs/n"}"##;
    let s = schema(text);
    let mut verdicts = Vec::new();
    for levels in 55..75 {
        let doc = format!("{}{{}}{}", "{\"c\":".repeat(levels), "}".repeat(levels));
        verdicts.push(agree(&s, text, &doc));
    }
    // Shallow ones pass, deep ones hit the guard (serde_json's own limit is further).
    assert!(verdicts.first() == Some(&true) && verdicts.last() == Some(&false));

    let items = r##"{"type":"array","items":{"$ref":"#/$defs/a"},"$defs":{"a":{"items":{"$ref":"#/$defs/a"}}}}"##;
    let s = schema(items);
    for levels in [10, 60, 63, 64, 65, 66, 70, 120] {
        let doc = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        agree(&s, items, &doc);
    }

    let looped = r##"{"$defs":{"a":{"$ref":"#/$defs/a","type":"object"}},"$ref":"#/$defs/a"}"##;
    let s = schema(looped);
    assert!(!agree(&s, looped, "{}"));
    assert!(!agree(&s, looped, "1"));
}
