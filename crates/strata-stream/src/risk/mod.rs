//! The risk pipeline: rules over live events (`rules.rs`) and the `risk` consumer that
//! decides, publishes blocks to every collector and records decisions (`consumer.rs`).

pub mod consumer;
pub mod rules;

pub use consumer::{decisions_ident, RiskConsumer, RISK_GROUP};
pub use rules::{Decision, RiskConfig, RiskEngine, Rule, RuleConfig};
