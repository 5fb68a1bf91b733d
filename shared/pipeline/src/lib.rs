//! The Stripe Data Pipeline engine, shared by the CLI (local mode) and the Lambda functions.
//!
//! A sync resolves each account (`GET /v1/account`), then per account and mode reads the change feed
//! and lists the datasets that need it (first backfill in `created` segments, due snapshots), under a
//! shared rate budget; it converts pages to Arrow, writes Parquet to the lake, merges it into the
//! warehouse and only then commits its cursor. [`engine`] is the orchestration, in stages; the other
//! modules are what it works with: the [`catalog`], the Stripe client ([`stripe`]), conversion
//! ([`convert`]), the [`lake`], the [`state`] store, the [`warehouse`]s and the [`clock`].

pub mod backfill;
pub mod catalog;
pub mod changes;
pub mod check;
pub mod clock;
pub mod config;
pub mod convert;
pub mod engine;
pub mod export;
pub mod failpoint;
pub mod https;
pub mod lake;
#[cfg(feature = "duckdb")]
pub mod local;
pub mod notify;
pub mod push;
pub mod slots;
pub mod state;
pub mod stripe;
pub mod warehouse;
