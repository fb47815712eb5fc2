//! Opens the bus `[bus]` names: the embedded segment log or Kafka. Producers and consumers
//! only ever see the resulting `Arc<dyn Log>`.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use anyhow::{Context, Result};
use strata_bus::config::BusKind;
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::Log;
use strata_bus_kafka::{KafkaLog, KafkaOptions};

/// The embedded bus as `[bus]` configures it.
pub fn embedded_options(config: &Config) -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: config.bus.segment_bytes,
        group_commit_window: config.bus.group_commit_window,
        max_pending_bytes: config.bus.max_pending_bytes,
        retention: config.bus.retention,
        retention_bytes: config.bus.retention_bytes,
    }
}

/// The Kafka bus as `[bus]` configures it.
pub fn kafka_options(config: &Config) -> KafkaOptions {
    let bus = &config.bus;
    KafkaOptions {
        brokers: bus
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect::<Vec<_>>()
            .join(","),
        client_id: bus.client_id.clone(),
        replication_factor: bus.replication_factor,
        linger: bus.group_commit_window,
        delivery_timeout: bus.delivery_timeout,
        max_pending_records: bus.max_pending_records,
        max_pending_bytes: bus.max_pending_bytes,
        request_timeout: Duration::from_secs(10),
        properties: bus.librdkafka.clone(),
    }
}

/// Offline checks of what only the backend can judge (librdkafka property names and values).
pub fn validate(config: &Config) -> Result<()> {
    if config.bus.kind == BusKind::Kafka {
        strata_bus_kafka::validate_properties(&kafka_options(config)).context("bus.librdkafka")?;
    }
    Ok(())
}

/// Opens the configured bus.
pub async fn open(config: &Config) -> Result<Arc<dyn Log>> {
    match config.bus.kind {
        BusKind::Embedded => {
            let log = EmbeddedLog::open(&config.bus_dir(), embedded_options(config))
                .await
                .with_context(|| format!("opening the bus at {}", config.bus_dir().display()))?;
            Ok(log)
        }
        BusKind::Kafka => {
            let log = KafkaLog::open(kafka_options(config))
                .await
                .with_context(|| format!("opening the Kafka bus at {}", config.bus.brokers))?;
            Ok(log)
        }
    }
}
