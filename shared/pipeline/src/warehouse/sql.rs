//! The SQL of a load, written once for every SQL warehouse that stages rows in tables of its own
//! (PostgreSQL, and Redshift through the Data API).
//!
//! It keeps to what PostgreSQL and Redshift both accept: `DELETE … USING`, `INSERT … SELECT … WHERE NOT
//! EXISTS`, window functions in a subquery, `CREATE TEMP TABLE … AS`, quoted lower-case identifiers and
//! `TIMESTAMP '…'` literals. No `MERGE`, `ON CONFLICT`, `DISTINCT ON` or `QUALIFY`, which only some of
//! them have. The backend fills its staging tables ([`Staging`]: binary `COPY` from the client, `COPY …
//! FROM 's3://…'`, or Snowflake's `COPY INTO`) and runs [`Dialect::merge`]'s statements.

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
    /// Names are written in upper case: where unquoted names fold to upper case (Snowflake), the
    /// `stripe.charges` of Sigma-style SQL then finds the tables this SQL creates.
    pub upper_case_names: bool,
}

/// The tables a load stages its rows in before the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging<'a> {
    /// Session-local temporary tables, `stage_<table>`, created inside the load's transaction
    /// (PostgreSQL, Redshift, DuckDB).
    Temporary,
    /// Transient tables of the load's schema, `stage_<tag>_<table>`, one set per session (`tag`),
    /// created before the load's transaction (Snowflake). Snowflake commits an open transaction at
    /// any DDL, so the merge's own table is built before it too ([`Merge::prepare`]); and its emulator
    /// cannot `COPY INTO` a temporary table, so the tables are transient (no fail-safe storage) and
    /// dropped after each load.
    InSchema { tag: &'a str },
}

/// A load's merge in three parts: what builds the newest staged version of each object, what
/// changes the stored tables (one transaction), and what drops the staging tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merge {
    pub prepare: Vec<String>,
    pub apply: Vec<Statement>,
    pub cleanup: Vec<String>,
}

impl Merge {
    /// All of it, in order: for backends whose DDL is transactional, to run in the load's
    /// transaction.
    pub fn into_statements(self) -> Vec<Statement> {
        let plain = |sql| Statement { sql, counts: false };
        self.prepare
            .into_iter()
            .map(plain)
            .chain(self.apply)
            .chain(self.cleanup.into_iter().map(plain))
            .collect()
    }
}

/// The dialect of the queries every backend shares unless it says otherwise
/// ([`super::Warehouse::dialect`]): lower-case names.
pub const STANDARD: Dialect = Dialect {
    text: "VARCHAR",
    integer: "BIGINT",
    float: "DOUBLE PRECISION",
    boolean: "BOOLEAN",
    timestamp: "TIMESTAMP",
    upper_case_names: false,
};

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

    /// A name as this dialect stores it (catalog names are lower case).
    pub fn name(&self, name: &str) -> String {
        if self.upper_case_names {
            name.to_uppercase()
        } else {
            name.to_string()
        }
    }

    /// A quoted identifier.
    pub fn q(&self, name: &str) -> String {
        q(&self.name(name))
    }

    /// `"schema"."table"`.
    pub fn qualified(&self, schema: &str, table: &str) -> String {
        format!("{}.{}", self.q(schema), self.q(table))
    }

    /// The table a load stages one table's rows in.
    pub fn stage_table(&self, schema: &str, table: &str, staging: Staging<'_>) -> String {
        match staging {
            Staging::Temporary => self.q(&format!("stage_{table}")),
            Staging::InSchema { tag } => self.qualified(schema, &format!("stage_{tag}_{table}")),
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

/// The rows of [`Dialect::schema_columns_query`] as each table's set of columns.
pub fn columns_by_table(
    rows: Vec<Vec<Option<String>>>,
) -> std::collections::HashMap<String, std::collections::HashSet<String>> {
    let mut out: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    for row in rows {
        if let [Some(table), Some(column)] = &row[..] {
            out.entry(table.clone()).or_default().insert(column.clone());
        }
    }
    out
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

/// One statement of a load; `counts` marks the one whose row count is the load's changed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub counts: bool,
}

fn plain(sql: String) -> Statement {
    Statement { sql, counts: false }
}

/// The longest tombstone statement [`Dialect::tombstones`] writes: well below the Redshift Data
/// API's 100 KB limit on one statement's text, however long the ids.
pub const MAX_TOMBSTONE_SQL: usize = 64 * 1024;

/// The statements and queries of loads, in this dialect.
impl Dialect {
    /// The schema and its `data_load_times` table.
    pub fn create_schema(&self, schema: &str) -> Vec<String> {
        let text = self.column_type(ColumnType::String);
        let ts = self.column_type(ColumnType::Timestamp);
        vec![
            format!("CREATE SCHEMA IF NOT EXISTS {}", self.q(schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({} {text}, {} {text}, {} {ts}, {} {ts})",
                self.qualified(schema, "data_load_times"),
                self.q("table_name"),
                self.q("merchant_id"),
                self.q("data_landed"),
                self.q("data_as_of"),
            ),
        ]
    }

    /// Lists a table's columns (one row per column, the name first); no rows when it does not exist.
    pub fn columns_query(&self, schema: &str, table: &str) -> String {
        format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = {} AND table_name = {}",
            lit(&self.name(schema)),
            lit(&self.name(table))
        )
    }

    /// Every column of every table of a schema: `(table_name, column_name)` rows, names as stored
    /// (see [`Dialect::name`]).
    pub fn schema_columns_query(&self, schema: &str) -> String {
        format!(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = {}",
            lit(&self.name(schema))
        )
    }

    fn create_table(&self, schema: &str, table: &Table) -> String {
        let defs: Vec<String> = table_columns(table)
            .iter()
            .map(|(n, k)| format!("{} {}", self.q(n), self.column_type(*k)))
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.qualified(schema, &table.name),
            defs.join(", ")
        )
    }

    /// The DDL that gives `table` every catalog column, given the columns it has (`existing`, as
    /// stored; empty when it does not exist): `CREATE TABLE`, or one `ALTER TABLE … ADD COLUMN` per
    /// missing column. Columns are added, never dropped.
    pub fn complete_table(
        &self,
        schema: &str,
        table: &Table,
        existing: &std::collections::HashSet<String>,
    ) -> Vec<Ddl> {
        if existing.is_empty() {
            return vec![Ddl {
                sql: self.create_table(schema, table),
                action: format!("creating {schema}.{}", table.name),
                added: None,
            }];
        }
        table_columns(table)
            .into_iter()
            .filter(|(name, _)| !existing.contains(&self.name(name)))
            .map(|(name, kind)| Ddl {
                sql: format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    self.qualified(schema, &table.name),
                    self.q(&name),
                    self.column_type(kind)
                ),
                action: format!("adding column {name} to {schema}.{}", table.name),
                added: Some(format!("{schema}.{}.{name}", table.name)),
            })
            .collect()
    }

    /// Creates the empty staging table of `table` (replacing a leftover one of this session).
    pub fn create_stage(&self, schema: &str, table: &str, staging: Staging<'_>) -> Vec<String> {
        let (stage, like) = (
            self.stage_table(schema, table, staging),
            self.qualified(schema, table),
        );
        match staging {
            Staging::Temporary => vec![
                format!("DROP TABLE IF EXISTS {stage}"),
                format!("CREATE TEMPORARY TABLE {stage} (LIKE {like})"),
            ],
            Staging::InSchema { .. } => {
                vec![format!(
                    "CREATE OR REPLACE TRANSIENT TABLE {stage} LIKE {like}"
                )]
            }
        }
    }

    fn column_list(&self, table: &Table, prefix: &str) -> String {
        table_columns(table)
            .iter()
            .map(|(n, _)| format!("{prefix}{}", self.q(n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statements that merge a load staged in its staging tables (for the tables in `staged`)
    /// into the dataset's tables: the newest staged version of each `(merchant_id, id)` replaces a
    /// stored one that is not newer, and the metadata and child rows of every object whose staged
    /// version is now the stored one are replaced by the staged ones. Run them after the stage is
    /// filled, [`Merge::apply`] in one transaction.
    pub fn merge(
        &self,
        schema: &str,
        dataset: &Dataset,
        staged: &[&str],
        staging: Staging<'_>,
    ) -> Merge {
        let main = dataset.main_table();
        if !staged.contains(&main.name.as_str()) {
            return Merge::default();
        }
        let target = self.qualified(schema, &main.name);
        let cols = self.column_list(main, "");
        let (m, b, id) = (self.q(MERCHANT_ID), self.q(BATCH_TIMESTAMP), self.q("id"));
        // The staged main-table rows with one row (the newest) per object.
        let newest = self.stage_table(schema, "newest", staging);
        let rank = self.q("stage_rank");
        let ranked = format!(
            "SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY {m}, {id} ORDER BY {b} DESC) AS {rank} FROM {}) AS ranked WHERE {rank} = 1",
            self.stage_table(schema, &main.name, staging)
        );
        let prepare = match staging {
            Staging::Temporary => vec![
                format!("DROP TABLE IF EXISTS {newest}"),
                format!("CREATE TEMPORARY TABLE {newest} AS {ranked}"),
            ],
            Staging::InSchema { .. } => {
                vec![format!(
                    "CREATE OR REPLACE TRANSIENT TABLE {newest} AS {ranked}"
                )]
            }
        };
        let mut apply = vec![
            plain(format!(
                "DELETE FROM {target} USING {newest} WHERE {target}.{m} = {newest}.{m} AND {target}.{id} = {newest}.{id} AND {target}.{b} <= {newest}.{b}"
            )),
            Statement {
                sql: format!(
                    "INSERT INTO {target} ({cols}) SELECT {cols} FROM {newest} WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {target}.{m} = {newest}.{m} AND {target}.{id} = {newest}.{id})"
                ),
                counts: true,
            },
        ];
        for table in dataset.tables.iter().filter(|t| t.kind != TableKind::Main) {
            let child = self.qualified(schema, &table.name);
            let parent = self.q(table.parent_key.as_deref().unwrap_or("parent_id"));
            apply.push(plain(format!(
                "DELETE FROM {child} USING {newest}, {target} WHERE {child}.{m} = {newest}.{m} AND {child}.{parent} = {newest}.{id} AND {target}.{m} = {newest}.{m} AND {target}.{id} = {newest}.{id} AND {target}.{b} = {newest}.{b}"
            )));
            if staged.contains(&table.name.as_str()) {
                let stage = self.stage_table(schema, &table.name, staging);
                apply.push(plain(format!(
                    "INSERT INTO {child} ({}) SELECT {} FROM {stage} JOIN {target} ON {target}.{m} = {stage}.{m} AND {target}.{id} = {stage}.{parent} AND {target}.{b} = {stage}.{b}",
                    self.column_list(table, ""),
                    self.column_list(table, &format!("{stage}."))
                )));
            }
        }
        let mut cleanup = vec![format!("DROP TABLE {newest}")];
        for t in staged {
            cleanup.push(format!(
                "DROP TABLE {}",
                self.stage_table(schema, t, staging)
            ));
        }
        Merge {
            prepare,
            apply,
            cleanup,
        }
    }

    /// Marks objects deleted, keeping their last version's columns; the version time only moves
    /// forward, so a later load of an older version cannot undo it. One `UPDATE … IN (…)` per at most
    /// [`MAX_TOMBSTONE_SQL`] bytes of statement: a re-list after the 30-day cliff can mark tens of
    /// thousands of ids at once.
    pub fn tombstones(
        &self,
        schema: &str,
        table: &str,
        merchant_id: &str,
        ids: &[String],
        micros: i64,
    ) -> Vec<String> {
        let head = format!(
            "UPDATE {t} SET {d} = TRUE, {b} = GREATEST({b}, {ts}) WHERE {m} = {mid} AND {id} IN (",
            t = self.qualified(schema, table),
            d = self.q(DELETED),
            b = self.q(BATCH_TIMESTAMP),
            m = self.q(MERCHANT_ID),
            id = self.q("id"),
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
        &self,
        schema: &str,
        dataset: &Dataset,
        merchant_id: &str,
        landed_micros: i64,
        as_of_secs: i64,
    ) -> Vec<String> {
        let target = self.qualified(schema, "data_load_times");
        let (table_name, merchant) = (self.q("table_name"), self.q("merchant_id"));
        let (landed, as_of) = (self.q("data_landed"), self.q("data_as_of"));
        let mut out = Vec::new();
        for table in &dataset.tables {
            let (t, mid) = (lit(&table.name), lit(merchant_id));
            out.push(format!(
                "DELETE FROM {target} WHERE {table_name} = {t} AND {merchant} = {mid}"
            ));
            out.push(format!(
                "INSERT INTO {target} ({table_name}, {merchant}, {landed}, {as_of}) VALUES ({t}, {mid}, {}, {})",
                timestamp(landed_micros),
                timestamp(as_of_secs.saturating_mul(1_000_000))
            ));
        }
        out
    }

    /// [`Dialect::load_times`] for several datasets at once (one `data_landed`): the statements of
    /// `Warehouse::record_freshness`, to run in one transaction.
    pub fn freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of_secs: i64,
    ) -> Vec<String> {
        let landed = super::now_micros();
        datasets
            .iter()
            .flat_map(|d| {
                self.load_times(
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
    pub fn stale_ids(
        &self,
        schema: &str,
        table: &str,
        owner: Owner<'_>,
        before_micros: i64,
    ) -> String {
        let account = owner
            .account
            .map(|a| format!(" AND {} = {}", self.q(ACCOUNT), lit(a)))
            .unwrap_or_default();
        format!(
            "SELECT {id} FROM {} WHERE {m} = {}{account} AND NOT COALESCE({d}, FALSE) AND {b} < {} ORDER BY {id}",
            self.qualified(schema, table),
            lit(owner.merchant_id),
            timestamp(before_micros),
            id = self.q("id"),
            m = self.q(MERCHANT_ID),
            d = self.q(DELETED),
            b = self.q(BATCH_TIMESTAMP),
        )
    }

    pub fn count(&self, schema: &str, table: &str, merchant_id: &str) -> String {
        format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM {} WHERE {} = {}",
            self.qualified(schema, table),
            self.q(MERCHANT_ID),
            lit(merchant_id)
        )
    }

    /// `data_load_times` as text: table, merchant, data landed, data as of.
    pub fn load_times_query(&self, schema: &str) -> String {
        format!(
            "SELECT {}, {}, CAST({} AS VARCHAR), CAST({} AS VARCHAR) FROM {} ORDER BY 2, 1",
            self.q("table_name"),
            self.q("merchant_id"),
            self.q("data_landed"),
            self.q("data_as_of"),
            self.qualified(schema, "data_load_times")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn many_deletes_are_cut_into_statements_the_data_api_takes() {
        assert!(STANDARD
            .tombstones("stripe", "charges", "acct_1", &[], 0)
            .is_empty());
        let ids: Vec<String> = (0..10_000).map(|n| format!("ch_3Mq{n:021}")).collect();
        let statements = STANDARD.tombstones("stripe", "charges", "acct_1", &ids, 0);
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
        let stmts = STANDARD
            .merge(
                "stripe",
                charges,
                &["charges", "charges_metadata"],
                Staging::Temporary,
            )
            .into_statements();
        assert_eq!(stmts.iter().filter(|s| s.counts).count(), 1);
        let all: String = stmts.iter().map(|s| s.sql.as_str()).collect();
        for absent in ["MERGE", "ON CONFLICT", "DISTINCT ON", "QUALIFY"] {
            assert!(!all.contains(absent), "{absent}");
        }
        assert!(all.contains("INSERT INTO \"stripe\".\"charges_metadata\""));
        // Nothing staged for the main table: nothing to merge (children only arrive with a parent).
        assert!(STANDARD
            .merge("stripe", charges, &["charges_metadata"], Staging::Temporary)
            .into_statements()
            .is_empty());
    }

    #[test]
    fn an_upper_case_dialect_writes_every_name_in_upper_case() {
        let upper = Dialect {
            upper_case_names: true,
            ..STANDARD
        };
        let charges = Catalog::get().dataset("charges").unwrap();
        let staging = Staging::InSchema { tag: "a1b2" };
        let merge = upper.merge("stripe", charges, &["charges", "charges_metadata"], staging);
        // Snowflake's DDL ends a transaction: none of it is in the transaction's part.
        assert!(
            merge.apply.iter().all(|s| !s.sql.contains("TABLE ")),
            "{merge:?}"
        );
        let mut all: Vec<String> = merge.into_statements().into_iter().map(|s| s.sql).collect();
        all.extend(upper.create_schema("stripe"));
        all.extend(upper.create_stage("stripe", "charges", staging));
        all.extend(upper.tombstones("stripe", "charges", "acct_1", &["ch_1".into()], 0));
        all.extend(upper.load_times("stripe", charges, "acct_1", 0, 0));
        all.push(upper.stale_ids(
            "stripe",
            "charges",
            Owner {
                merchant_id: "acct_1",
                account: Some("acct_2"),
            },
            0,
        ));
        for sql in &all {
            // Every quoted name is upper case; values (in single quotes) are left as they are.
            for name in sql.split('"').skip(1).step_by(2) {
                assert_eq!(name, name.to_uppercase(), "{sql}");
            }
        }
        let joined = all.join("\n");
        assert!(joined.contains("\"STRIPE\".\"CHARGES_METADATA\""));
        assert!(joined.contains(
            "CREATE OR REPLACE TRANSIENT TABLE \"STRIPE\".\"STAGE_A1B2_CHARGES\" LIKE \"STRIPE\".\"CHARGES\""
        ));
        assert!(joined.contains("DROP TABLE \"STRIPE\".\"STAGE_A1B2_NEWEST\""));
        assert!(joined.contains("'acct_1'") && joined.contains("'ch_1'"));
        assert_eq!(
            upper.schema_columns_query("stripe"),
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'STRIPE'"
        );
        assert!(STANDARD
            .create_stage("stripe", "charges", Staging::Temporary)
            .contains(
                &"CREATE TEMPORARY TABLE \"stage_charges\" (LIKE \"stripe\".\"charges\")"
                    .to_string()
            ));
    }
}
