//! Strata's shared model: the `[data]` and `[governance]` config sections, the event and
//! dead-letter records that travel on the bus, the app registry, the clock and the core error
//! type. Every other config section lives in the crate that reads it (ADR 0035).

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
pub mod redact;
pub mod risk;
pub mod time;
pub mod tokens;

pub use error::{Error, Fault, Result};
pub use event::{BusRecord, BusRecordView, Event, EventView, RecordError, Rejected};
