//! Snowflake: the client of its SQL service ([`client`]), key-pair authentication ([`jwt`]) and the
//! reading of its results ([`rows`]).

pub mod client;
pub mod jwt;
pub mod rows;

pub use client::{Credential, Login, QueryResult, ResultFormat, Session, SnowflakeError};
pub use jwt::KeyPairAuth;
