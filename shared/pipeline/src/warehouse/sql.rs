//! The SQL of a load, written once for every SQL warehouse that stages rows in tables of its own
//! (PostgreSQL, and Redshift through the Data API).
//!
//! It keeps to what PostgreSQL and Redshift both accept: `DELETE … USING`, `INSERT … SELECT … WHERE NOT
//! EXISTS`, window functions in a subquery, `CREATE TEMP TABLE … AS`, quoted lower-case identifiers and
//! `TIMESTAMP '…'` literals. No `MERGE`, `ON CONFLICT`, `DISTINCT ON` or `QUALIFY`, which only some of
//! them have. The backend fills `stage_<table>` (binary `COPY` from the client, or `COPY … FROM 's3://…'`)
//! and runs [`merge`]'s statements in the same transaction.

use crate::catalog::{
    ColumnType, Dataset, Owner, Table, TableKind, ACCOUNT, BATCH_TIMESTAMP, DELETED, MERCHANT_ID,
};
use crate::convert::table_columns;

/// How a backend spells column types; the rest of the SQL is shared.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Strings and JSON text.
    pub text: &'static str,
    pub integer: &'static str,
    pub float: &'static str,
    pub boolean: &'static str,
    /// UTC, without a time zone.
    pub timestamp: &'static str,
}

impl Dialect {
    pub fn column_type(&self, kind: ColumnType) -> &'static str {
        match kind {
            ColumnType::String | ColumnType::Json => self.text,
            ColumnType::Int64 => self.integer,
            ColumnType::Float64 => self.float,
            ColumnType::Bool => self.boolean,
            ColumnType::Timestamp => self.timestamp,
        }
    }
}

/// A double-quoted identifier.
pub fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", q(schema), q(table))
}

/// The session-local table a load stages one table's rows in.
pub fn stage_table(table: &str) -> String {
    q(&format!("stage_{table}"))
}

/// The staged main-table rows with one row (the newest) per object.
const NEWEST: &str = "\"stage_newest\"";

/// A `TIMESTAMP '…'` literal (UTC, microseconds) for Unix microseconds.
pub fn timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "TIMESTAMP '{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}'",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the era-based conversion: 400-year
/// eras of 146,097 days, years starting in March so the leap day comes last).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The schema and its `data_load_times` table.
pub fn create_schema(d: &Dialect, schema: &str) -> Vec<String> {
    let text = d.column_type(ColumnType::String);
    let ts = d.column_type(ColumnType::Timestamp);
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", q(schema)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name {text}, merchant_id {text}, data_landed {ts}, data_as_of {ts})",
            qualified(schema, "data_load_times")
        ),
    ]
}

/// Lists a table's columns (one row per column, the name first); no rows when it does not exist.
pub fn columns_query(schema: &str, table: &str) -> String {
    format!(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = {} AND table_name = {}",
        lit(schema),
        lit(table)
    )
}

/// Every column of every table of a schema: `(table_name, column_name)` rows.
pub fn schema_columns_query(schema: &str) -> String {
    format!(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = {}",
        lit(schema)
    )
}

fn create_table(d: &Dialect, schema: &str, table: &Table) -> String {
    let defs: Vec<String> = table_columns(table)
        .iter()
        .map(|(n, k)| format!("{} {}", q(n), d.column_type(*k)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        qualified(schema, &table.name),
        defs.join(", ")
    )
}

/// One DDL statement that completes a table, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    pub sql: String,
    /// For messages: `creating stripe.charges`, `adding column x to stripe.charges`.
    pub action: String,
    /// The column it adds to an existing table (`schema.table.column`), for notifications.
    pub added: Option<String>,
}

/// The DDL that gives `table` every catalog column, given the columns it has (`existing`; empty when it
/// does not exist): `CREATE TABLE`, or one `ALTER TABLE … ADD COLUMN` per missing column. Columns are
/// added, never dropped.
pub fn complete_table(
    d: &Dialect,
    schema: &str,
    table: &Table,
    existing: &std::collections::HashSet<String>,
) -> Vec<Ddl> {
    if existing.is_empty() {
        return vec![Ddl {
            sql: create_table(d, schema, table),
            action: format!("creating {schema}.{}", table.name),
            added: None,
        }];
    }
    table_columns(table)
        .into_iter()
        .filter(|(name, _)| !existing.contains(name))
        .map(|(name, kind)| Ddl {
            sql: add_column(d, schema, &table.name, &name, kind),
            action: format!("adding column {name} to {schema}.{}", table.name),
            added: Some(format!("{schema}.{}.{name}", table.name)),
        })
        .collect()
}

fn add_column(d: &Dialect, schema: &str, table: &str, name: &str, kind: ColumnType) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        qualified(schema, table),
        q(name),
        d.column_type(kind)
    )
}

/// Creates the empty staging table of `table` (dropping a leftover one of this session first).
pub fn create_stage(schema: &str, table: &str) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {}", stage_table(table)),
        format!(
            "CREATE TEMP TABLE {} (LIKE {})",
            stage_table(table),
            qualified(schema, table)
        ),
    ]
}

/// One statement of a load; `counts` marks the one whose row count is the load's changed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub counts: bool,
}

fn plain(sql: String) -> Statement {
    Statement { sql, counts: false }
}

fn column_list(table: &Table, prefix: &str) -> String {
    table_columns(table)
        .iter()
        .map(|(n, _)| format!("{prefix}{}", q(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements that merge a load staged in `stage_<table>` (for the tables in `staged`) into the
/// dataset's tables: the newest staged version of each `(merchant_id, id)` replaces a stored one that is
/// not newer, and the metadata and child rows of every object whose staged version is now the stored
/// one are replaced by the staged ones. Run them in one transaction, after the stage is filled.
pub fn merge(schema: &str, dataset: &Dataset, staged: &[&str]) -> Vec<Statement> {
    let main = dataset.main_table();
    if !staged.contains(&main.name.as_str()) {
        return Vec::new();
    }
    let target = qualified(schema, &main.name);
    let cols = column_list(main, "");
    let (m, b) = (q(MERCHANT_ID), q(BATCH_TIMESTAMP));
    let mut out = vec![
        plain(format!("DROP TABLE IF EXISTS {NEWEST}")),
        plain(format!(
            "CREATE TEMP TABLE {NEWEST} AS SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {m}, \"id\" ORDER BY {b} DESC) AS stage_rank FROM {}) AS ranked WHERE stage_rank = 1",
            stage_table(&main.name)
        )),
        plain(format!(
            "DELETE FROM {target} USING {NEWEST} WHERE {target}.{m} = {NEWEST}.{m} AND {target}.\"id\" = {NEWEST}.\"id\" AND {target}.{b} <= {NEWEST}.{b}"
        )),
        Statement {
            sql: format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {NEWEST} WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {target}.{m} = {NEWEST}.{m} AND {target}.\"id\" = {NEWEST}.\"id\")"
            ),
            counts: true,
        },
    ];
    for table in dataset.tables.iter().filter(|t| t.kind != TableKind::Main) {
        let child = qualified(schema, &table.name);
        let parent = q(table.parent_key.as_deref().unwrap_or("parent_id"));
        out.push(plain(format!(
            "DELETE FROM {child} USING {NEWEST}, {target} WHERE {child}.{m} = {NEWEST}.{m} AND {child}.{parent} = {NEWEST}.\"id\" AND {target}.{m} = {NEWEST}.{m} AND {target}.\"id\" = {NEWEST}.\"id\" AND {target}.{b} = {NEWEST}.{b}"
        )));
        if staged.contains(&table.name.as_str()) {
            let stage = stage_table(&table.name);
            out.push(plain(format!(
                "INSERT INTO {child} ({}) SELECT {} FROM {stage} JOIN {target} ON {target}.{m} = {stage}.{m} AND {target}.\"id\" = {stage}.{parent} AND {target}.{b} = {stage}.{b}",
                column_list(table, ""),
                column_list(table, &format!("{stage}."))
            )));
        }
    }
    out.push(plain(format!("DROP TABLE {NEWEST}")));
    for t in staged {
        out.push(plain(format!("DROP TABLE {}", stage_table(t))));
    }
    out
}

/// The longest tombstone statement [`tombstones`] writes: well below the Redshift Data API's 100 KB
/// limit on one statement's text, however long the ids.
pub const MAX_TOMBSTONE_SQL: usize = 64 * 1024;

/// Marks objects deleted, keeping their last version's columns; the version time only moves forward,
/// so a later load of an older version cannot undo it. One `UPDATE … IN (…)` per at most
/// [`MAX_TOMBSTONE_SQL`] bytes of statement: a re-list after the 30-day cliff can mark tens of
/// thousands of ids at once.
pub fn tombstones(
    schema: &str,
    table: &str,
    merchant_id: &str,
    ids: &[String],
    micros: i64,
) -> Vec<String> {
    let head = format!(
        "UPDATE {t} SET {d} = TRUE, {b} = GREATEST({b}, {ts}) WHERE {m} = {mid} AND \"id\" IN (",
        t = qualified(schema, table),
        d = q(DELETED),
        b = q(BATCH_TIMESTAMP),
        m = q(MERCHANT_ID),
        ts = timestamp(micros),
        mid = lit(merchant_id),
    );
    let mut out = Vec::new();
    let mut sql = String::new();
    for id in ids {
        let id = lit(id);
        if !sql.is_empty() && sql.len() + id.len() + 3 > MAX_TOMBSTONE_SQL {
            sql.push(')');
            out.push(std::mem::take(&mut sql));
        }
        if sql.is_empty() {
            sql.push_str(&head);
        } else {
            sql.push_str(", ");
        }
        sql.push_str(&id);
    }
    if !sql.is_empty() {
        sql.push(')');
        out.push(sql);
    }
    out
}

/// Replaces the `data_load_times` rows of a dataset's tables for one merchant.
pub fn load_times(
    schema: &str,
    dataset: &Dataset,
    merchant_id: &str,
    landed_micros: i64,
    as_of_secs: i64,
) -> Vec<String> {
    let target = qualified(schema, "data_load_times");
    let mut out = Vec::new();
    for table in &dataset.tables {
        let (t, mid) = (lit(&table.name), lit(merchant_id));
        out.push(format!(
            "DELETE FROM {target} WHERE table_name = {t} AND merchant_id = {mid}"
        ));
        out.push(format!(
            "INSERT INTO {target} (table_name, merchant_id, data_landed, data_as_of) VALUES ({t}, {mid}, {}, {})",
            timestamp(landed_micros),
            timestamp(as_of_secs.saturating_mul(1_000_000))
        ));
    }
    out
}

/// [`load_times`] for several datasets at once (one `data_landed`): the statements of
/// `Warehouse::record_freshness`, to run in one transaction.
pub fn freshness(
    livemode: bool,
    datasets: &[&Dataset],
    merchant_id: &str,
    as_of_secs: i64,
) -> Vec<String> {
    let landed = super::now_micros();
    datasets
        .iter()
        .flat_map(|d| {
            load_times(
                super::schema_name(livemode),
                d,
                merchant_id,
                landed,
                as_of_secs,
            )
        })
        .collect()
}

/// Ids of an owner's rows that are not deleted and older than `before_micros`.
pub fn stale_ids(schema: &str, table: &str, owner: Owner<'_>, before_micros: i64) -> String {
    let account = owner
        .account
        .map(|a| format!(" AND {} = {}", q(ACCOUNT), lit(a)))
        .unwrap_or_default();
    format!(
        "SELECT \"id\" FROM {} WHERE {m} = {}{account} AND NOT COALESCE({d}, FALSE) AND {b} < {} ORDER BY \"id\"",
        qualified(schema, table),
        lit(owner.merchant_id),
        timestamp(before_micros),
        m = q(MERCHANT_ID),
        d = q(DELETED),
        b = q(BATCH_TIMESTAMP),
    )
}

pub fn count(schema: &str, table: &str, merchant_id: &str) -> String {
    format!(
        "SELECT CAST(COUNT(*) AS VARCHAR) FROM {} WHERE {} = {}",
        qualified(schema, table),
        q(MERCHANT_ID),
        lit(merchant_id)
    )
}

/// `data_load_times` as text: table, merchant, data landed, data as of.
pub fn load_times_query(schema: &str) -> String {
    format!(
        "SELECT table_name, merchant_id, CAST(data_landed AS VARCHAR), CAST(data_as_of AS VARCHAR) FROM {} ORDER BY 2, 1",
        qualified(schema, "data_load_times")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn many_deletes_are_cut_into_statements_the_data_api_takes() {
        assert!(tombstones("stripe", "charges", "acct_1", &[], 0).is_empty());
        let ids: Vec<String> = (0..10_000).map(|n| format!("ch_3Mq{n:021}")).collect();
        let statements = tombstones("stripe", "charges", "acct_1", &ids, 0);
        assert!(statements.len() >= 5, "{}", statements.len());
        let mut seen = 0;
        for sql in &statements {
            assert!(sql.len() <= MAX_TOMBSTONE_SQL, "{}", sql.len());
            assert!(sql.starts_with("UPDATE \"stripe\".\"charges\" SET") && sql.ends_with("')"));
            seen += sql.matches("'ch_3Mq").count();
        }
        assert_eq!(seen, ids.len());
        assert!(statements[0].contains(&format!("'{}'", ids[0])));
        assert!(statements
            .last()
            .unwrap()
            .contains(&format!("'{}'", ids[9_999])));
    }

    #[test]
    fn timestamps_are_utc_literals() {
        assert_eq!(timestamp(0), "TIMESTAMP '1970-01-01 00:00:00.000000'");
        // 2026-11-26T12:00:00Z and a leap day.
        assert_eq!(
            timestamp(1_795_694_400_000_000 + 123_456),
            "TIMESTAMP '2026-11-26 12:00:00.123456'"
        );
        assert_eq!(
            timestamp(951_782_400_000_000),
            "TIMESTAMP '2000-02-29 00:00:00.000000'"
        );
        assert_eq!(timestamp(-1), "TIMESTAMP '1969-12-31 23:59:59.999999'");
    }

    #[test]
    fn merge_keeps_to_the_shared_subset_and_counts_the_insert() {
        let charges = Catalog::get().dataset("charges").unwrap();
        let stmts = merge("stripe", charges, &["charges", "charges_metadata"]);
        assert_eq!(stmts.iter().filter(|s| s.counts).count(), 1);
        let all: String = stmts.iter().map(|s| s.sql.as_str()).collect();
        for absent in ["MERGE", "ON CONFLICT", "DISTINCT ON", "QUALIFY"] {
            assert!(!all.contains(absent), "{absent}");
        }
        assert!(all.contains("INSERT INTO \"stripe\".\"charges_metadata\""));
        // Nothing staged for the main table: nothing to merge (children only arrive with a parent).
        assert!(merge("stripe", charges, &["charges_metadata"]).is_empty());
    }
}
