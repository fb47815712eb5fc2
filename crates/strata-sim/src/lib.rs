//! `strata-sim`: a deterministic social app for demos, tests and benchmarks.
//!
//! - [`World::generate`] builds users with profiles, posts (power-law authors), a follow graph
//!   (preferential attachment: power-law degrees; follow-backs make mutual pairs), orders and
//!   messages between mutual follows, over `days` simulated days — all from one seed.
//! - [`World::events`] yields the Segment events those users send, in time order, with daily
//!   and hourly cycles and Zipf-distributed post popularity (see [`events`] for the catalogue
//!   and the timestamp rule).
//! - [`World::changes`] yields the business-row changes (insert/update/delete) that build the
//!   app's own tables, for the CDC path ([`rows`]).
//! - [`drive`] posts the events to any Segment-compatible `/v1/batch` endpoint at a given rate
//!   and reports throughput and ack latency.
//!
//! Determinism: the same [`WorldConfig`] gives byte-identical worlds, events and changes on
//! every platform ([`rng`] explains how).

pub mod catalog;
pub mod drive;
pub mod error;
pub mod events;
mod http;
pub mod rng;
pub mod rows;
pub mod schedule;
pub mod world;

pub use drive::{drive, drive_with, DriveOptions, DriveReport, DriveStats, StatsSnapshot};
pub use error::{Error, Result};
pub use events::{Call, Event, EventStream, Properties};
pub use rows::{Change, Changes, Op, Row, Table};
pub use world::{World, WorldConfig};
