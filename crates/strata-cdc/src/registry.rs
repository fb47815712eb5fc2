//! Every kind of change source, by its `kind = "…"`: the one place a new connector is
//! registered.

use crate::config::SourceConfig;

use crate::connector::{Configured, DynConnector};

/// The connector of a `[[sources]]` entry, erased.
pub fn connector(config: &SourceConfig) -> Box<dyn DynConnector> {
    match config {
        SourceConfig::Mysql(c) => {
            Box::new(Configured::<crate::mysql::MysqlSource> { config: c.clone() })
        }
        SourceConfig::Postgres(c) => {
            Box::new(Configured::<crate::postgres::PostgresSource> { config: c.clone() })
        }
        SourceConfig::Elasticsearch(c) => {
            Box::new(Configured::<crate::elasticsearch::EsSource> { config: c.clone() })
        }
        SourceConfig::Mongodb(c) => {
            Box::new(Configured::<crate::mongodb::MongoSource> { config: c.clone() })
        }
    }
}
