//! The reference warehouse (models/social), built into the binary and written into the demo's
//! data directory, and the strata.toml setting that points at it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The reference warehouse, built into the binary so the demo works from any directory.
pub(super) const SOCIAL: &[(&str, &str)] = &[
    (
        "strata_project.toml",
        include_str!("../../../../../models/social/strata_project.toml"),
    ),
    (
        "dwd/dwd_user_action.sql",
        include_str!("../../../../../models/social/dwd/dwd_user_action.sql"),
    ),
    (
        "dwd/dwd_post.sql",
        include_str!("../../../../../models/social/dwd/dwd_post.sql"),
    ),
    (
        "dwd/dwd_user_relation.sql",
        include_str!("../../../../../models/social/dwd/dwd_user_relation.sql"),
    ),
    (
        "dws/dws_user_daily.sql",
        include_str!("../../../../../models/social/dws/dws_user_daily.sql"),
    ),
    (
        "dws/dws_post_daily.sql",
        include_str!("../../../../../models/social/dws/dws_post_daily.sql"),
    ),
    (
        "dws/dws_pair_interaction.sql",
        include_str!("../../../../../models/social/dws/dws_pair_interaction.sql"),
    ),
    (
        "ads/ads_user_features.sql",
        include_str!("../../../../../models/social/ads/ads_user_features.sql"),
    ),
    (
        "ads/ads_post_features.sql",
        include_str!("../../../../../models/social/ads/ads_post_features.sql"),
    ),
    (
        "ads/ads_sample_ctr.sql",
        include_str!("../../../../../models/social/ads/ads_sample_ctr.sql"),
    ),
    (
        "ads/ads_sample_follow.sql",
        include_str!("../../../../../models/social/ads/ads_sample_follow.sql"),
    ),
    (
        "ads/ads_recall_u2u_cf.sql",
        include_str!("../../../../../models/social/ads/ads_recall_u2u_cf.sql"),
    ),
    (
        "features/user_features.toml",
        include_str!("../../../../../models/social/features/user_features.toml"),
    ),
    (
        "features/post_features.toml",
        include_str!("../../../../../models/social/features/post_features.toml"),
    ),
    (
        "features/u2u_cf.toml",
        include_str!("../../../../../models/social/features/u2u_cf.toml"),
    ),
    (
        "features/pair_features.toml",
        include_str!("../../../../../models/social/features/pair_features.toml"),
    ),
    (
        "features/user_realtime.toml",
        include_str!("../../../../../models/social/features/user_realtime.toml"),
    ),
    (
        "features/post_trending.toml",
        include_str!("../../../../../models/social/features/post_trending.toml"),
    ),
    (
        "ml/ctr_ranker.toml",
        include_str!("../../../../../models/social/ml/ctr_ranker.toml"),
    ),
    (
        "ml/two_tower.toml",
        include_str!("../../../../../models/social/ml/two_tower.toml"),
    ),
];

/// Writes the reference project under DIR/models/social (not overwriting edits).
pub(super) fn write_project(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("models").join("social");
    for (rel, text) in SOCIAL {
        let path = root.join(rel);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

/// Points `warehouse.project` of the demo's strata.toml at the project.
pub(super) fn set_project(config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config)?;
    if text.contains("\nproject = \"models/social\"") {
        return Ok(());
    }
    let Some(updated) = text
        .contains("\nproject = \"\"")
        .then(|| text.replacen("\nproject = \"\"", "\nproject = \"models/social\"", 1))
    else {
        bail!(
            "{} sets warehouse.project already; point it at models/social",
            config.display()
        );
    };
    std::fs::write(config, updated)?;
    Ok(())
}
