//! Every warehouse scenario of the shared suite (`stripe_pipeline_testkit::conformance::warehouse`),
//! once per backend, and the PostgreSQL adapter's connection errors.

use stripe_pipeline::config::Secret;
use stripe_pipeline::warehouse::postgres::Postgres;
use stripe_pipeline_testkit::conformance::warehouse::*;
use stripe_pipeline_testkit::postgres as postgres_server;

/// Every scenario, once per backend.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod duckdb {
            $(#[test] fn $scenario() { super::runtime().block_on(super::$scenario(super::Backend::DuckDb)) })*
        }
        mod postgres {
            $(#[test] fn $scenario() { super::runtime().block_on(super::$scenario(super::Backend::Postgres)) })*
        }
        mod redshift {
            $(#[test] fn $scenario() { super::runtime().block_on(super::$scenario(super::Backend::Redshift)) })*
        }
        mod snowflake {
            $(#[test] fn $scenario() { super::runtime().block_on(super::$scenario(super::Backend::Snowflake)) })*
        }
    };
}

conformance!(
    newest_version_wins_and_loads_are_idempotent,
    child_rows_are_replaced_per_parent,
    deletes_are_kept_as_flags,
    thousands_of_deletes_in_one_load,
    new_catalog_columns_are_added_and_old_files_still_load,
    modes_have_their_schemas_and_load_times,
);

#[test]
fn postgres_connection_problems_name_the_server_and_what_to_check() {
    // Nothing listens on port 1.
    let err = runtime()
        .block_on(Postgres::connect(
            &Secret::new("postgres://reader:s3cret-pw@127.0.0.1:1/analytics?sslmode=disable"),
            None,
        ))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reader@127.0.0.1:1/analytics"), "{err}");
    assert!(err.contains("check the host, port"), "{err}");
    assert!(
        !err.contains("s3cret-pw"),
        "the password never shows: {err}"
    );
    let err = runtime()
        .block_on(Postgres::connect(
            &Secret::new("postgres://x@h:notaport/db"),
            None,
        ))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("connection URL is invalid"), "{err}");
    // A database that does not exist: the server's own message.
    let url = postgres_server::server().database("exists");
    let missing = url.replace("/exists_", "/missing_");
    let err = runtime()
        .block_on(Postgres::connect(&Secret::new(missing), None))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}
