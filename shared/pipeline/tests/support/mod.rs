//! Services the integration tests start: PostgreSQL, moto (AWS), the Redshift Data API emulator, and
//! the Google Cloud Storage and Azure Blob Storage emulators.
pub mod moto;
pub mod postgres;
pub mod redshift;
pub mod storage;
