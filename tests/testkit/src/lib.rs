//! What the workspace's integration tests share, in one crate instead of files included by path:
//! the services they start (PostgreSQL, moto, the Redshift Data API emulator, fakesnow, the GCS and
//! Azure emulators), the acceptance helpers (a simulator, a configuration for it, a sync run, and every
//! table compared with the simulator's ground truth), a lake-only engine, and the conformance suites
//! every adapter of a port must pass ([`conformance`]), and the benchmark programs' helpers ([`bench`]).

pub mod acceptance;
pub mod bench;
pub mod conformance;
pub mod lake_engine;
pub mod moto;
pub mod postgres;
pub mod redshift;
pub mod snowflake;
pub mod storage;
