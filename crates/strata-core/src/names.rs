//! What a namespace or table name may be, and where a table's files may live.
//!
//! Both are checked wherever a name or a location enters the catalog — the REST catalog, SQL
//! DDL, the CLI, warehouse models — because a table's default location is
//! `<warehouse>/<namespace>/<table>`: a name with a path separator or a `..` component would put
//! files outside the warehouse, and a name with a `.` would be split into levels by the SQL
//! catalog (which joins namespace levels with `.`), leaving an entry no query can list.
//!
//! The checks are pure (no I/O) except [`LocationPolicy::check`] on a local warehouse, which
//! resolves symlinks of the part of the path that exists.

use std::path::{Component, Path, PathBuf};

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// The rule, as error messages state it.
pub const NAME_RULE: &str =
    "names are 1 to 128 letters, digits, '_' or '-', not starting with '-' \
     (no '.', '/', '\\', spaces, '%' or control characters)";

/// Checks one namespace level or table name; `what` says which (e.g. "table name").
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 {
        return Err(format!("{what} must not be empty: {NAME_RULE}"));
    }
    if count > MAX_NAME_CHARS {
        return Err(format!(
            "{what} {:?}… is {count} characters long: {NAME_RULE}",
            name.chars().take(32).collect::<String>()
        ));
    }
    if name.starts_with('-') {
        return Err(format!("{what} {name:?} starts with '-': {NAME_RULE}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{what} {:?} contains {}: {NAME_RULE}",
            name.escape_debug().to_string(),
            describe(bad)
        ));
    }
    Ok(())
}

/// Checks every level of a namespace.
pub fn check_namespace<S: AsRef<str>>(levels: &[S]) -> Result<(), String> {
    if levels.is_empty() {
        return Err(format!("a namespace needs at least one level: {NAME_RULE}"));
    }
    for level in levels {
        check_name("namespace", level.as_ref())?;
    }
    Ok(())
}

fn describe(c: char) -> String {
    match c {
        '.' => "'.'".to_string(),
        '/' | '\\' => format!("a path separator {c:?}"),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c if c.is_whitespace() => "whitespace".to_string(),
        c => format!("{c:?}"),
    }
}

/// Where table files may live: inside the warehouse, or under one of the configured allowed
/// locations (`catalog_server.allowed_locations`, like Polaris' allowed locations).
#[derive(Debug, Clone)]
pub struct LocationPolicy {
    roots: Vec<Root>,
}

#[derive(Debug, Clone)]
enum Root {
    /// A local directory, made absolute and, where it exists, with symlinks resolved.
    Local(PathBuf),
    /// `scheme://bucket/prefix` without a trailing `/`.
    Remote { scheme: String, rest: String },
}

impl LocationPolicy {
    /// `warehouse` first, then `allowed` (both as configured: a local directory, `file://…` or
    /// `s3://bucket/prefix`).
    pub fn new(warehouse: &str, allowed: &[String]) -> Result<Self, String> {
        let mut roots = Vec::with_capacity(1 + allowed.len());
        for loc in std::iter::once(warehouse).chain(allowed.iter().map(String::as_str)) {
            roots.push(Root::parse(loc)?);
        }
        Ok(LocationPolicy { roots })
    }

    /// `Ok` when `location` (a table location, data or metadata path, as a client sent it) is
    /// inside an allowed root; otherwise the reason, naming the rule but not the server's
    /// directories.
    pub fn check(&self, location: &str) -> Result<(), String> {
        let target =
            Root::parse(location).map_err(|e| format!("location {location:?} refused: {e}"))?;
        if self.roots.iter().any(|root| root.contains(&target)) {
            Ok(())
        } else {
            Err(format!(
                "location {location:?} is outside the warehouse and the allowed locations \
                 (catalog_server.allowed_locations)"
            ))
        }
    }
}

impl Root {
    fn parse(location: &str) -> Result<Root, String> {
        if location.chars().any(char::is_control) {
            return Err("it contains a control character".to_string());
        }
        if location.contains('%') {
            // Percent-escapes are decoded by some file IOs and not by others: `%2e%2e` could
            // mean `..` to one and a literal name to another. Refuse rather than guess.
            return Err("it contains '%' (percent-encoded paths are not accepted)".to_string());
        }
        if location.contains('\\') {
            return Err("it contains '\\'".to_string());
        }
        let (scheme, rest) = match location.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("file".to_string(), location),
        };
        if scheme == "file" {
            let path = Path::new(rest);
            if !path.is_absolute() {
                return Err("a local location must be an absolute path".to_string());
            }
            return Ok(Root::Local(resolve_local(&normalise(path)?)));
        }
        if !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("unknown scheme {scheme:?}"));
        }
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err("it has a '.' or '..' component".to_string());
        }
        if segments.is_empty() {
            return Err("it names no bucket".to_string());
        }
        // `s3a://` and `s3n://` are the same store as `s3://`.
        let scheme = match scheme.as_str() {
            "s3a" | "s3n" => "s3".to_string(),
            _ => scheme,
        };
        Ok(Root::Remote {
            scheme,
            rest: segments.join("/"),
        })
    }

    fn contains(&self, target: &Root) -> bool {
        match (self, target) {
            (Root::Local(root), Root::Local(t)) => t.starts_with(root),
            (
                Root::Remote { scheme, rest },
                Root::Remote {
                    scheme: ts,
                    rest: tr,
                },
            ) => {
                scheme == ts
                    && (tr == rest
                        || tr
                            .strip_prefix(rest.as_str())
                            .is_some_and(|tail| tail.starts_with('/')))
            }
            _ => false,
        }
    }
}

/// Removes `.` components and refuses `..` ones (rather than folding them: a client has no
/// reason to send one, and folding `a/link/..` lexically would disagree with the file system).
fn normalise(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => return Err("it has a '..' component".to_string()),
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// Resolves symlinks in the longest prefix of `path` that exists, and appends the rest: a
/// symlink inside the warehouse that points elsewhere is then seen for where it points.
fn resolve_local(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ods", "ods_event", "a-b", "x1", "événements", "A_B-9"] {
            assert!(check_name("table name", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/../../b",
            "../../../../evil",
            "a.b",
            "a b",
            "a\\b",
            "-a",
            "a\u{0}b",
            "a\nb",
            "%2e%2e",
            "a\u{1f}b",
        ] {
            let err = check_name("table name", bad).unwrap_err();
            assert!(err.contains("names are 1 to 128"), "{bad:?}: {err}");
        }
        assert!(check_name("t", &"a".repeat(128)).is_ok());
        assert!(check_name("t", &"a".repeat(129)).is_err());
        assert!(check_namespace::<&str>(&[]).is_err());
        assert!(check_namespace(&["a", "b"]).is_ok());
        assert!(check_namespace(&["a", ".."]).is_err());
    }

    #[test]
    fn local_locations() {
        let dir = tempfile::tempdir().unwrap();
        let wh = dir.path().join("lake");
        std::fs::create_dir_all(wh.join("ods")).unwrap();
        let allowed_dir = dir.path().join("shared");
        let policy = LocationPolicy::new(
            wh.to_str().unwrap(),
            &[format!("file://{}", allowed_dir.display())],
        )
        .unwrap();
        let w = wh.display();
        policy.check(&format!("{w}/ods/t")).unwrap();
        policy.check(&format!("file://{w}/ods/t/data")).unwrap();
        policy.check(&format!("{w}/./ods/t")).unwrap();
        policy
            .check(&format!("{}/x", allowed_dir.display()))
            .unwrap();
        for bad in [
            format!("{w}/../elsewhere"),
            format!("{w}/ods/../../elsewhere"),
            format!("{w}/%2e%2e/elsewhere"),
            format!("{w}-evil/t"),
            "/tmp/evil".to_string(),
            "relative/path".to_string(),
            "s3://bucket/x".to_string(),
        ] {
            assert!(policy.check(&bad).is_err(), "{bad}");
        }
        // A symlink inside the warehouse that points outside is seen for what it is.
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, wh.join("ods/link")).unwrap();
        let err = policy.check(&format!("{w}/ods/link/t")).unwrap_err();
        assert!(err.contains("outside the warehouse"), "{err}");
        assert!(!err.contains(dir.path().to_str().unwrap()) || err.contains("ods/link"));
    }

    #[test]
    fn remote_locations() {
        let policy =
            LocationPolicy::new("s3://lake/prod", &["s3://shared/in".to_string()]).unwrap();
        policy.check("s3://lake/prod/ods/t").unwrap();
        policy.check("s3a://lake/prod/ods/t").unwrap();
        policy.check("s3://lake/prod").unwrap();
        policy.check("s3://shared/in/x").unwrap();
        for bad in [
            "s3://lake/production/t",
            "s3://lake/prod/../other",
            "s3://lake/prod/%2E%2E/other",
            "s3://other/prod/t",
            "gs://lake/prod/t",
            "/lake/prod/t",
            "file:///lake/prod/t",
        ] {
            assert!(policy.check(bad).is_err(), "{bad}");
        }
    }
}
