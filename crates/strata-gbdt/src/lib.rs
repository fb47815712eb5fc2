//! Gradient-boosted decision trees (issue #26): see the crate description.
