//! Schemas kept in the warehouse project, beside the models: `<project>/schemas/`.
//!
//! - `<project>/schemas/<subject>.json`: one version (e.g. `schemas/Post Clicked.json`,
//!   `schemas/identify.json`);
//! - `<project>/schemas/<subject>/<n>.json` (or `v<n>.json`): versions 1, 2, … in order.
//!
//! `strata check` compiles every file and checks each version against the ones before it
//! under the subject's level (from `[collector.schemas]`); `strata serve` and `strata schemas
//! register --project` register them, in order, into the registry (a version already there is
//! not registered twice).

use std::path::{Path, PathBuf};

use crate::compat;
use crate::config::{check_subject, SchemasConfig};
use crate::registry::{Registered, Registry};
use crate::schema::Schema;

/// `<project>/schemas`.
pub fn schemas_dir(project: &Path) -> PathBuf {
    project.join("schemas")
}

/// One subject's files, oldest version first.
#[derive(Debug, Clone)]
pub struct ProjectSubject {
    pub subject: String,
    /// (file, its text)
    pub versions: Vec<(PathBuf, String)>,
}

/// The version number of `1.json` / `v1.json`.
fn version_number(path: &Path) -> Option<u32> {
    let stem = path.file_stem()?.to_str()?;
    stem.strip_prefix('v')
        .unwrap_or(stem)
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// Reads the subjects under `dir` (none when it does not exist). Problems: unreadable files,
/// bad names, a subject given both as a file and a folder, version files not numbered.
pub fn load(dir: &Path) -> Result<Vec<ProjectSubject>, Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    let mut subjects: Vec<ProjectSubject> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return Err(vec![format!("reading {}: {e}", dir.display())]),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let read = |p: &Path, problems: &mut Vec<String>| match std::fs::read_to_string(p) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("{}: {e}", p.display()));
            None
        }
    };
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with('.') {
            continue;
        }
        let (subject, versions) = if path.is_dir() {
            let mut files: Vec<(u32, PathBuf)> = Vec::new();
            let inner = match std::fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("reading {}: {e}", path.display()));
                    continue;
                }
            };
            for f in inner.filter_map(|e| e.ok().map(|e| e.path())) {
                if !is_json(&f) {
                    continue;
                }
                match version_number(&f) {
                    Some(n) => files.push((n, f)),
                    None => problems.push(format!(
                        "{}: a version file is named <n>.json or v<n>.json (n = 1, 2, …)",
                        f.display()
                    )),
                }
            }
            files.sort();
            for (i, (n, f)) in files.iter().enumerate() {
                if *n as usize != i + 1 {
                    problems.push(format!(
                        "{}: versions must be numbered 1, 2, … without gaps (expected {})",
                        f.display(),
                        i + 1
                    ));
                    break;
                }
            }
            let texts: Vec<(PathBuf, String)> = files
                .into_iter()
                .filter_map(|(_, f)| read(&f, &mut problems).map(|t| (f, t)))
                .collect();
            (name, texts)
        } else if is_json(&path) {
            let subject = name.trim_end_matches(".json").to_string();
            match read(&path, &mut problems) {
                Some(t) => (subject, vec![(path.clone(), t)]),
                None => continue,
            }
        } else {
            continue;
        };
        if let Err(e) = check_subject(&subject) {
            problems.push(format!("{}: {e}", path.display()));
            continue;
        }
        if subjects.iter().any(|s| s.subject == subject) {
            problems.push(format!(
                "{}: subject {subject:?} is given both as a file and as a folder",
                path.display()
            ));
            continue;
        }
        if !versions.is_empty() {
            subjects.push(ProjectSubject { subject, versions });
        }
    }
    if problems.is_empty() {
        Ok(subjects)
    } else {
        Err(problems)
    }
}

/// Every problem of the project's schema files, one line each: unreadable or misnamed files,
/// invalid JSON, unsupported keywords, and versions incompatible with the ones before them
/// under the subject's level from `[collector.schemas]`. Pure: reads the files only.
pub fn check(dir: &Path, config: &SchemasConfig) -> Vec<String> {
    let subjects = match load(dir) {
        Ok(s) => s,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for s in &subjects {
        let mode = config
            .subjects
            .get(&s.subject)
            .and_then(|x| x.compatibility)
            .unwrap_or(config.compatibility);
        let mut compiled: Vec<(u32, Schema)> = Vec::new();
        for (i, (file, text)) in s.versions.iter().enumerate() {
            let version = i as u32 + 1;
            match Schema::parse(text) {
                Ok(schema) => {
                    let refs: Vec<(u32, &Schema)> = compiled.iter().map(|(v, s)| (*v, s)).collect();
                    for p in compat::check(mode, &schema, &refs) {
                        problems.push(format!(
                            "{}: version {version} is not {mode} compatible: {p}",
                            file.display()
                        ));
                    }
                    compiled.push((version, schema));
                }
                Err(found) => {
                    for p in found {
                        problems.push(format!("{}: {p}", file.display()));
                    }
                    // Later versions cannot be compared with a schema that does not compile.
                    break;
                }
            }
        }
    }
    problems
}

/// Registers every version of every subject under `dir`, in order; returns what each did.
pub fn sync(registry: &Registry, dir: &Path) -> Result<Vec<(String, Registered)>, Vec<String>> {
    let subjects = load(dir)?;
    let mut done = Vec::new();
    let mut problems = Vec::new();
    for s in subjects {
        for (file, text) in &s.versions {
            match registry.register(&s.subject, text) {
                Ok(r) => done.push((s.subject.clone(), r)),
                Err(e) => {
                    problems.push(format!("{}: {e}", file.display()));
                    break;
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(done)
    } else {
        Err(problems)
    }
}
