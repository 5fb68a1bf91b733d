//! Services the integration tests start: PostgreSQL, moto (AWS) and the Redshift Data API emulator.
pub mod moto;
pub mod postgres;
pub mod redshift;
