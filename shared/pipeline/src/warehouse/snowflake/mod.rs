//! Snowflake: the client of its SQL service ([`client`]), key-pair authentication ([`jwt`]), the
//! reading of its results ([`rows`]) and the warehouse loaded through them ([`warehouse`]).

pub mod client;
pub mod jwt;
pub mod rows;
pub mod warehouse;

pub use client::{Credential, Login, QueryResult, ResultFormat, Session, SnowflakeError};
pub use jwt::KeyPairAuth;
pub use warehouse::{Snowflake, SnowflakeSettings};
