//! Models (issue #26): see the crate description.
