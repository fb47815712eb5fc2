//! Vector index (issue #26): see the crate description.
