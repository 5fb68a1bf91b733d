//! The engine: one sync of Stripe accounts into the lake and the warehouse, in stages that follow a
//! batch's path (ARCHITECTURE.md has the picture):
//!
//! ```text
//! resolve ─▶ plan ─▶ feed (events) ─┐
//!                 └▶ list (pages) ──┴▶ convert (Arrow) ─▶ deliver: Parquet ─▶ warehouse ─▶ cursor
//! ```
//!
//! - [`resolve`]: every key checked once, the account's id and Stripe's clock.
//! - [`plan`]: what each dataset needs this run, and how work is cut (batch sizes, segments, slices).
//! - `feed` / `list`: the two ways data is read (the change feed's window; a dataset's pages).
//! - `deliver`: the slice protocol; the only place a cursor moves after data was delivered.
//! - `quarantine`: rows a warehouse cannot hold, kept out of its loads and reported.
//! - `cohort`: connected accounts' deliveries, made together (few files for many small accounts).
//! - [`report`]: progress while it runs and the report at the end; [`error`]: what failed.
//! - `slice`: one slice under its lease, as both deployments run it, and what the operators are told.
//! - `queue`: local mode's orchestration: the scheduler's plan and the worker's slices, in one process.
//! - `run`: [`Engine`], over the ports it is built with ([`EngineBuilder`]).

mod cohort;
mod context;
mod deliver;
pub mod error;
mod feed;
mod list;
pub mod plan;
mod quarantine;
mod queue;
pub mod report;
pub mod resolve;
mod run;
mod slice;

pub use context::SharedWarehouse;
pub use error::SyncError;
pub use plan::{freshness_kind, list_work, needs_snapshots, ListKind, SliceOutcome, SliceWork};
pub use report::{AccountReport, DatasetReport, FeedReport, Progress, Quiet, SyncReport};
pub use resolve::{open, resolve, Opened, Resolved};
pub use run::{Engine, EngineBuilder, PushReport};
pub use slice::SliceRun;
