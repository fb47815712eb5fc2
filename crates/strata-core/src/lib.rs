//! Strata's shared model: configuration, the event and dead-letter records that travel on the
//! bus, the app registry, the clock and the core error type.

pub mod apps;
pub mod cdc;
pub mod config;
pub mod cron;
pub mod error;
pub mod event;
mod event_binary;
mod event_codec;
pub mod fsutil;
pub mod governance;
pub mod names;
pub mod s3;
pub mod sources;
pub mod time;
pub mod tokens;

pub use config::Config;
pub use error::{Error, Fault, Result};
pub use event::{BusRecord, BusRecordView, Event, EventView, RecordError, Rejected};
