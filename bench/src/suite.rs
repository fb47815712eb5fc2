//! The suite's report: each benchmark writes `<suite>-<stamp>.{json,md}` and
//! `<suite>-latest.{json,md}`, and `latest.{json,md}` is rebuilt from every suite's latest, so
//! running one suite keeps the other suites' last figures in the report.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

/// Suites in report order (others follow, by name).
const ORDER: [&str; 4] = ["ingest", "merge", "dag", "cdc"];

/// Writes one suite's report and rebuilds `latest.{json,md}`. Returns the stamped JSON path.
pub fn write_report(
    out: &Path,
    suite: &str,
    report: &Value,
    md: &str,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let json_text = serde_json::to_string_pretty(report)?;
    let json_path = out.join(format!("{suite}-{stamp}.json"));
    std::fs::write(&json_path, &json_text)?;
    std::fs::write(out.join(format!("{suite}-{stamp}.md")), md)?;
    std::fs::write(out.join(format!("{suite}-latest.json")), &json_text)?;
    std::fs::write(out.join(format!("{suite}-latest.md")), md)?;
    rebuild_latest(out)?;
    Ok(json_path)
}

/// `latest.json` = `{"suites": {name: report}}`; `latest.md` = every suite's Markdown, its
/// headings one level down under a common title.
pub fn rebuild_latest(out: &Path) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(out)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("-latest.json"))
                .map(str::to_string)
        })
        .collect();
    names.sort_by_key(|n| {
        (
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.clone(),
        )
    });
    let mut suites = Map::new();
    let mut md = String::from("# Strata benchmark report\n\n");
    md.push_str(&format!(
        "Suites: {}. Each section is that suite's latest run (`bash bench/run.sh SUITE` reruns one); \
         bench/README.md explains every figure.\n",
        names.join(", ")
    ));
    for name in &names {
        let text = std::fs::read_to_string(out.join(format!("{name}-latest.json")))?;
        suites.insert(name.clone(), serde_json::from_str(&text)?);
        if let Ok(section) = std::fs::read_to_string(out.join(format!("{name}-latest.md"))) {
            md.push('\n');
            md.push_str(&demote_headings(&section));
        }
    }
    let latest = json!({
        "generated": chrono::Utc::now().to_rfc3339(),
        "suites": Value::Object(suites),
    });
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(&latest)?,
    )?;
    std::fs::write(out.join("latest.md"), md)?;
    Ok(())
}

fn demote_headings(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + 16);
    for line in md.lines() {
        if line.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `200000`, `200k`, `10M`.
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim().replace('_', "");
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s:?} is not a count: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_suite_keeps_the_others() {
        let dir = std::env::temp_dir().join(format!("strata-suite-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_report(&dir, "merge", &json!({"x": 1}), "# MERGE\n\nm\n").unwrap();
        write_report(&dir, "ingest", &json!({"y": 2}), "# Ingest\n\ni\n").unwrap();
        write_report(&dir, "merge", &json!({"x": 3}), "# MERGE\n\nm2\n").unwrap();
        let latest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("latest.json")).unwrap())
                .unwrap();
        assert_eq!(latest["suites"]["ingest"]["y"], 2);
        assert_eq!(latest["suites"]["merge"]["x"], 3);
        let md = std::fs::read_to_string(dir.join("latest.md")).unwrap();
        let ingest = md.find("## Ingest").unwrap();
        let merge = md.find("## MERGE").unwrap();
        assert!(ingest < merge, "{md}");
        assert!(md.contains("m2") && !md.contains("\nm\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("200k"), Ok(200_000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("1_000"), Ok(1000));
        assert!(parse_count("x").is_err());
    }
}
