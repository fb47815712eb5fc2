//! The Redis backend (`[online] kind = "redis"`). Written by the Redis part of this work.

use crate::config::OnlineConfig;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct RedisBackend;

impl RedisBackend {
    pub async fn connect(
        _config: &OnlineConfig,
    ) -> Result<std::sync::Arc<dyn crate::backend::Backend>> {
        Err(Error::Config(
            "the Redis online store is not built yet".into(),
        ))
    }
}
