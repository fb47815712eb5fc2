//! `strata-sim`: a deterministic social app for demos, tests and benchmarks.
//!
//! - [`World::generate`] builds users with profiles, posts (power-law authors), a follow graph
//!   (preferential attachment: power-law degrees; follow-backs make mutual pairs), orders and
//!   messages between mutual follows, over `days` simulated days — all from one seed.
//! - [`World::events`] yields the Segment events those users send, in time order, with daily
//!   and hourly cycles; the feed mixes followed authors' recent posts, Zipf-popular posts
//!   and posts on the user's favourite tags (see [`events`] for the catalogue and the
//!   timestamp rule).
//! - Hidden [`preferences`]: each user's taste over the post tags, each post's quality, and
//!   affinity to followed authors decide what the organic feed shows and what users click,
//!   like and dwell on. They never appear in events or rows; [`World::score_list`] judges any
//!   ranked list against them (expected clicks, likes, dwell), [`World::react`] simulates a
//!   user reading one.
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
pub mod feedloop;
pub mod http;
pub mod preferences;
pub mod rng;
pub mod rows;
pub mod schedule;
pub mod world;

pub use drive::{drive, drive_with, DriveOptions, DriveReport, DriveStats, StatsSnapshot};
pub use error::{Error, Result};
pub use events::{Call, Event, EventStream, Properties};
pub use preferences::{Baselines, Ceiling, Ceilings, ListScore, Preferences, Reaction};
pub use rows::{Change, Changes, Op, Row, Table};
pub use world::{World, WorldConfig};
