use super::*;

#[derive(Deserialize)]
struct Root {
    #[serde(default)]
    pulls: Vec<PullConfig>,
}

fn parse(text: &str) -> Result<Vec<PullConfig>, String> {
    let root: Root = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(root.pulls)
}

fn problems(text: &str) -> Vec<String> {
    validate_list(&parse(text).unwrap())
}

const GOOD: &str = r#"
[[pulls]]
name = "orders"
schedule = "0 * * * *"
delay = "5m"
start = "2026-12-01"
url = "https://api.example.com/v1/orders?from={start}&to={end}&key=${env:ORDERS_KEY}"
headers = { Authorization = "Bearer ${env:ORDERS_TOKEN}", Accept = "application/json" }
records = "$.data"
pagination = { kind = "cursor", cursor = "$.meta.next_cursor", param = "after" }
rate_limit = 2.5
fields = [
  { name = "order_id", path = "$.id", type = "long" },
  { name = "updated_at", type = "timestamp" },
]
"#;

#[test]
fn a_full_entry_parses_and_validates() {
    let pulls = parse(GOOD).unwrap();
    assert_eq!(validate_list(&pulls), Vec::<String>::new());
    let p = &pulls[0];
    assert_eq!(p.delay, Duration::from_secs(300));
    assert_eq!(p.pagination.kind, PageKind::Cursor);
    assert_eq!(p.pagination.param(), "after");
    assert_eq!(p.fields[1].kind, FieldType::Timestamp);
    assert_eq!(p.fields[1].path_text(), "$['updated_at']");
    assert_eq!(p.table_ident().unwrap().to_string(), "ods.ods_pull_orders");
    assert_eq!(p.env_names(), ["ORDERS_KEY", "ORDERS_TOKEN"]);
    // Defaults that work without saying anything.
    assert_eq!(p.max_attempts, 5);
    assert_eq!(p.pagination.max_pages, 10_000);
}

#[test]
fn unset_env_variables_are_named_by_check() {
    let pulls = parse(GOOD).unwrap();
    let env = |k: &str| (k == "ORDERS_KEY").then(|| "k".to_string());
    assert_eq!(
        missing_env(&pulls, &env),
        ["pulls.orders: environment variable ORDERS_TOKEN is not set (the url or a header reads ${env:ORDERS_TOKEN})"]
    );
}

#[test]
fn unknown_keys_are_errors() {
    let err = parse(&format!("{GOOD}colour = \"red\"\n")).unwrap_err();
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err =
        parse("[[pulls]]\nname = \"a\"\npagination = { kind = \"cursor\", cursr = \"$.c\" }\n")
            .unwrap_err();
    assert!(err.contains("unknown field `cursr`"), "{err}");
    let err = parse("[[pulls]]\nname = \"a\"\npagination = { kind = \"offset\" }\n").unwrap_err();
    assert!(err.contains("unknown variant `offset`"), "{err}");
    let err = parse("[[pulls]]\nname = \"a\"\nfields = [{ name = \"x\", type = \"int\" }]\n")
        .unwrap_err();
    assert!(err.contains("unknown variant `int`"), "{err}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
[[pulls]]
name = "Bad-Name"
schedule = "0 * * *"
start = "last tuesday"
url = "ftp://example.com/{day}"
headers = { "Bad Header" = "x", Authorization = "Bearer ${TOKEN}" }
records = "$."
pagination = { kind = "page", cursor = "$.c", size_param = "per_page", max_pages = 0 }
rate_limit = -1.0
timeout = "0s"
max_attempts = 0
backoff = "2m"
max_backoff = "1m"
table = "nodots"
fields = [
  { name = "record", type = "string" },
  { name = "a", type = "long" },
  { name = "a", path = "$[", type = "long" },
]

[[pulls]]
schedule = "0 0 * * *"
url = "https://example.com/"
"#;
    let found = problems(text);
    for wanted in [
        "pulls.Bad-Name.name: \"Bad-Name\" may hold only a-z, 0-9 and '_'",
        "pulls.Bad-Name.schedule: \"0 * * *\": a cron expression has 5 fields",
        "pulls.Bad-Name.start: \"last tuesday\" is not a time",
        "pulls.Bad-Name.url: {day} is not a window variable",
        "pulls.Bad-Name.headers: \"Bad Header\" is not a header name",
        "pulls.Bad-Name.headers.Authorization: ${TOKEN}: only ${env:NAME} is supported",
        "pulls.Bad-Name.records: \"$.\": a '.' must be followed by a name",
        "pulls.Bad-Name.pagination.cursor: is for kind = \"cursor\"; this pagination is kind = \"page\"",
        "pulls.Bad-Name.pagination.page_size: is required with size_param",
        "pulls.Bad-Name.pagination.max_pages: must be at least 1",
        "pulls.Bad-Name.rate_limit: must be a number of requests per second",
        "pulls.Bad-Name.timeout: must be positive",
        "pulls.Bad-Name.max_attempts: must be at least 1",
        "pulls.Bad-Name.backoff: cannot exceed max_backoff",
        "pulls.Bad-Name.table: table \"nodots\" must be namespace.table",
        "pulls.Bad-Name.fields.record: \"record\" is one of the columns every pull table has",
        "pulls.Bad-Name.fields.a: is declared twice",
        "pulls.Bad-Name.fields.a.path: \"$[\": '[' is not closed",
        "pulls[1].name: is required",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(wanted)),
            "missing {wanted:?} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), 19, "{}", found.join("\n"));
    // A URL that is not http(s) is caught once its template is fine.
    let found =
        problems("[[pulls]]\nname = \"a\"\nschedule = \"0 0 * * *\"\nurl = \"ftp://x/{ds}\"\n");
    assert_eq!(found, ["pulls.a.url: \"ftp\" is not http:// or https://"]);
}

#[test]
fn names_and_tables_are_unique() {
    let one = "[[pulls]]\nname = \"a\"\nschedule = \"0 0 * * *\"\nurl = \"https://x/\"\n";
    let found = problems(&format!("{one}{one}"));
    assert!(
        found.contains(&"pulls: two pulls are named \"a\"".to_string()),
        "{found:?}"
    );
    let b = "[[pulls]]\nname = \"b\"\nschedule = \"0 0 * * *\"\nurl = \"https://x/\"\ntable = \"ods.ods_pull_a\"\n";
    let found = problems(&format!("{one}{b}"));
    assert_eq!(found, ["pulls: a and b both write ods.ods_pull_a"]);
}

#[test]
fn pagination_keys_belong_to_their_kind() {
    let base = "[[pulls]]\nname = \"a\"\nschedule = \"0 0 * * *\"\nurl = \"https://x/\"\n";
    let found = problems(&format!(
        "{base}pagination = {{ kind = \"next_link\", param = \"p\", page_size = 5 }}\n"
    ));
    assert_eq!(
        found,
        [
            "pulls.a.pagination.param: is for kind = \"cursor\" or \"page\"; this pagination is kind = \"next_link\"",
            "pulls.a.pagination.page_size: is for kind = \"page\"; this pagination is kind = \"next_link\"",
        ]
    );
    let found = problems(&format!("{base}pagination = {{ kind = \"cursor\" }}\n"));
    assert_eq!(
        found,
        ["pulls.a.pagination.cursor: is required for kind = \"cursor\": the JSON path of the next cursor"]
    );
    assert!(problems(&format!("{base}pagination = {{ kind = \"next_link\" }}\n")).is_empty());
    assert!(problems(&format!(
        "{base}pagination = {{ kind = \"page\", first_page = 0, size_param = \"n\", page_size = 50 }}\n"
    ))
    .is_empty());
}

#[test]
fn secrets_written_into_the_file_are_redacted_for_printing() {
    let mut pulls = parse(
        "[[pulls]]\nname = \"a\"\nheaders = { Authorization = \"Bearer abc\", X-Api-Key = \"${env:K}\", Accept = \"application/json\" }\n",
    )
    .unwrap();
    redact_headers(&mut pulls);
    let h = &pulls[0].headers;
    assert_eq!(h["Authorization"], "<redacted>");
    assert_eq!(h["X-Api-Key"], "${env:K}");
    assert_eq!(h["Accept"], "application/json");
}
