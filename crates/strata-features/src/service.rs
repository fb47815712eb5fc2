//! Feature services: named sets of features a client asks for by one name
//! (`"feature_service": "ranking"` in `/get-online-features`, as in Feast), declared in
//! `features/services/*.toml` beside the views:
//!
//! ```toml
//! description = "What the feed ranker reads"
//! features = ["user_features:*", "post_features:ctr_7d"]   # view:feature, view:* = every feature
//! ```
//!
//! The name defaults to the file name without `.toml`. Loading checks what can be checked
//! offline: the views exist and are served online, a named feature is one the view selects
//! (a view listing its features), and is not the view's entity or timestamp column. `view:*`
//! means every feature of the view's published schema, resolved when a request is served.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::view::{toml_files, views_dir, FeatureView, Selection};

/// What a service file says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// The service's name (default: the file name without `.toml`).
    pub name: Option<String>,
    /// What the service is for (shown to people, not used).
    #[serde(default)]
    pub description: String,
    /// The features, `view:feature`; `view:*` is every feature of the view.
    pub features: Vec<String>,
}

/// One entry of a service: a view and one of its features, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFeature {
    pub view: String,
    /// `None`: every feature of the view's published schema (`view:*`).
    pub feature: Option<String>,
}

/// A loaded feature service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureService {
    pub name: String,
    /// The file it came from, for messages.
    pub file: String,
    pub description: String,
    pub features: Vec<ServiceFeature>,
}

/// The directory of a project's feature services.
pub fn services_dir(project_root: &Path) -> PathBuf {
    views_dir(project_root).join("services")
}

/// Loads every `features/services/*.toml` of the project at `project_root` (none: an empty
/// list), checked against `views`. Every problem is reported, one per line.
pub fn load_services(project_root: &Path, views: &[FeatureView]) -> Result<Vec<FeatureService>> {
    let mut services = Vec::new();
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (path, rel) in toml_files(&services_dir(project_root), project_root)? {
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
            .and_then(|text| {
                toml::from_str::<ServiceFile>(&text).map_err(|e| Error::view(&rel, e.to_string()))
            })
            .and_then(|file| {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                FeatureService::from_file(file, &stem, &rel, views)
            });
        match loaded {
            Ok(s) => {
                if !names.insert(s.name.clone()) {
                    problems.push(format!(
                        "{rel}: another feature service is also named {}",
                        s.name
                    ));
                }
                services.push(s);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(services)
    } else {
        Err(Error::Plan(problems.join("\n")))
    }
}

impl FeatureService {
    /// Checks a parsed file against `views`; every problem in one error naming the file.
    pub fn from_file(
        file: ServiceFile,
        default_name: &str,
        rel: &str,
        views: &[FeatureView],
    ) -> Result<FeatureService> {
        let mut problems = Vec::new();
        let name = file.name.unwrap_or_else(|| default_name.to_string());
        if let Err(e) = strata_core::names::check_name("feature service name", &name) {
            problems.push(e);
        }
        if file.features.is_empty() {
            problems.push("features lists nothing".to_string());
        }
        let mut features = Vec::new();
        let mut seen = HashSet::new();
        for reference in &file.features {
            let Some((view_name, feature)) = reference.split_once(':') else {
                problems.push(format!(
                    "{reference:?} must be view:feature (or view:* for every feature)"
                ));
                continue;
            };
            if !seen.insert(reference.as_str()) {
                problems.push(format!("{reference} is listed twice"));
                continue;
            }
            let Some(view) = views.iter().find(|v| v.name == view_name) else {
                let known: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
                problems.push(format!(
                    "{reference}: no feature view named {view_name} (views: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
                continue;
            };
            if !view.online {
                problems.push(format!(
                    "{reference}: view {view_name} is not served online (online = false in {})",
                    view.file
                ));
                continue;
            }
            let feature = match feature {
                "*" => None,
                f => {
                    if let Some(problem) = feature_problem(view, f) {
                        problems.push(format!("{reference}: {problem}"));
                        continue;
                    }
                    Some(f.to_string())
                }
            };
            features.push(ServiceFeature {
                view: view_name.to_string(),
                feature,
            });
        }
        if problems.is_empty() {
            Ok(FeatureService {
                name,
                file: rel.to_string(),
                description: file.description,
                features,
            })
        } else {
            Err(Error::view(rel, problems.join("; ")))
        }
    }
}

/// Why `feature` cannot be a feature of `view`, as far as the view file tells (a view taking
/// every column is checked against its published schema when served).
fn feature_problem(view: &FeatureView, feature: &str) -> Option<String> {
    if feature.is_empty() {
        return Some("the feature name is empty".to_string());
    }
    if view.entity.iter().any(|e| e == feature) {
        return Some(format!("{feature} is the entity of view {}", view.name));
    }
    if view.timestamp.as_deref() == Some(feature) {
        return Some(format!(
            "{feature} is the timestamp column of view {}",
            view.name
        ));
    }
    match &view.selection {
        Selection::Only(list) if !list.iter().any(|c| c == feature) => Some(format!(
            "view {} has no feature {feature} (it has {})",
            view.name,
            list.join(", ")
        )),
        Selection::AllBut(excluded) if excluded.iter().any(|c| c == feature) => Some(format!(
            "view {} excludes {feature} ({})",
            view.name, view.file
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewFile;

    fn view(name: &str, text: &str) -> FeatureView {
        let file: ViewFile = toml::from_str(text).unwrap();
        FeatureView::from_file(file, name, &format!("features/{name}.toml")).unwrap()
    }

    fn views() -> Vec<FeatureView> {
        vec![
            view(
                "user_features",
                "entity = \"user_id\"\nsource = \"ads.u\"\ntimestamp = \"dt\"",
            ),
            view(
                "post_features",
                "entity = \"post_id\"\nsource = \"ads.p\"\nfeatures = [\"ctr_7d\", \"likes\"]",
            ),
            view(
                "offline_only",
                "entity = \"user_id\"\nsource = \"ads.o\"\nonline = false",
            ),
        ]
    }

    fn write(dir: &Path, name: &str, text: &str) {
        let d = services_dir(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), text).unwrap();
    }

    #[test]
    fn services_load_with_their_file_name_and_wildcards() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "ranking.toml",
            "description = \"ranker\"\nfeatures = [\"user_features:*\", \"post_features:ctr_7d\"]",
        );
        write(
            dir.path(),
            "other.toml",
            "name = \"renamed\"\nfeatures = [\"user_features:ctr_7d\"]",
        );
        let services = load_services(dir.path(), &views()).unwrap();
        assert_eq!(services.len(), 2);
        let ranking = services.iter().find(|s| s.name == "ranking").unwrap();
        assert_eq!(ranking.description, "ranker");
        assert_eq!(
            ranking.features,
            vec![
                ServiceFeature {
                    view: "user_features".into(),
                    feature: None
                },
                ServiceFeature {
                    view: "post_features".into(),
                    feature: Some("ctr_7d".into())
                },
            ]
        );
        assert!(services.iter().any(|s| s.name == "renamed"));
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.toml",
            "features = [\"nope:x\", \"post_features:shares\", \"user_features:user_id\", \
             \"user_features:dt\", \"offline_only:*\", \"plain\", \"post_features:likes\", \
             \"post_features:likes\"]",
        );
        write(dir.path(), "unknown.toml", "features = []\nbogus = 1");
        let e = load_services(dir.path(), &views()).unwrap_err().to_string();
        for needle in [
            "no feature view named nope",
            "view post_features has no feature shares (it has ctr_7d, likes)",
            "user_id is the entity of view user_features",
            "dt is the timestamp column",
            "offline_only is not served online",
            "\"plain\" must be view:feature",
            "post_features:likes is listed twice",
            "unknown.toml",
            "bogus",
        ] {
            assert!(e.contains(needle), "{needle:?} missing from: {e}");
        }
    }

    #[test]
    fn no_services_directory_is_no_services() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_services(dir.path(), &views()).unwrap().is_empty());
    }
}
