//! Two-tower retrieval model (issue #26): see the crate description.
