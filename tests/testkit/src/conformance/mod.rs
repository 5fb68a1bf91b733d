//! The shared conformance suites: one contract per port, run against every adapter.

pub mod notifier;
pub mod state;
pub mod stripe_api;
pub mod warehouse;
