//! The table catalog: which datasets exist, how to list them, and how their objects map to tables and
//! columns. It is generated from Stripe's OpenAPI spec by `catalog/generate.py` and committed as
//! `catalog/catalog.json`, so the engine builds without the spec and every column is traceable to it.

use serde::Deserialize;
use std::sync::OnceLock;

/// Columns every table has besides the catalog's: the Stripe account, when the pipeline fetched this
/// version of the row, and the soft-delete flag.
pub const MERCHANT_ID: &str = "merchant_id";
pub const BATCH_TIMESTAMP: &str = "batch_timestamp";
pub const DELETED: &str = "deleted";
/// The connected account a Connect platform's row belongs to, in the `connected_account_<table>` tables
/// (Stripe's Data Pipeline layout); `merchant_id` is the platform there.
pub const ACCOUNT: &str = "account";
/// The prefix of the tables that hold a Connect platform's connected accounts' data.
pub const CONNECTED_PREFIX: &str = "connected_account_";
/// The dataset of a platform's connected accounts (table `connected_accounts`).
pub const ACCOUNTS: &str = "accounts";

/// Whose rows: a merchant's, or one connected account's rows of a Connect platform (`merchant_id` is
/// the platform, `account` the connected account, in the `connected_account_*` tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub merchant_id: &'a str,
    pub account: Option<&'a str>,
}

impl<'a> Owner<'a> {
    /// A merchant's own rows.
    pub fn merchant(merchant_id: &'a str) -> Owner<'a> {
        Owner {
            merchant_id,
            account: None,
        }
    }
}

static CATALOG_JSON: &str = include_str!("../catalog/catalog.json");

/// Arrow-level type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    /// Unix seconds in JSON; a timestamp without time zone holding UTC in Arrow, Parquet and the
    /// warehouses (so no time-zone database is needed to read it).
    Timestamp,
    /// Any JSON value, stored as compact JSON text.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Where the value sits in the object (`["outcome", "type"]`).
    pub path: Vec<String>,
    /// A reference: the value is an id, or an expanded object whose `id` is taken.
    #[serde(default)]
    pub reference: bool,
    /// A list of scalars, stored comma-separated.
    #[serde(default)]
    pub join: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// One row per object of the dataset.
    Main,
    /// One row per metadata key: `(<parent_key>, key, value)`.
    Metadata,
    /// One row per element of an array or nested list inside the object.
    Child,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub name: String,
    pub kind: TableKind,
    /// Path of the rows inside the object (empty for the main table).
    pub source: Vec<String>,
    /// Column holding the parent object's id (metadata and child tables).
    pub parent_key: Option<String>,
    /// Endpoint paging the complete nested list when the embedded one has `has_more` (`{id}` = parent).
    pub nested_list_path: Option<String>,
    /// Rows that Stripe never embeds in the parent object (a setup intent's attempts, a value list's
    /// items): paged from `nested_list_path` for every parent read, so they are replaced whenever the
    /// parent is. `source` is then the key the engine puts the complete list under.
    #[serde(default)]
    pub fetch: bool,
    /// For a fetched table: the dataset's lists ask for the list with `expand[]` (a customer's tax
    /// ids), so it is paged only for objects read without it (from the feed) or cut off.
    #[serde(default)]
    pub expand: bool,
    /// For a fetched table: the parent's field that is null when the list is empty (a setup intent's
    /// `latest_attempt`): only parents with it set are paged.
    #[serde(default)]
    pub fetch_when: Option<String>,
    /// With `fetch_when`: only parents whose field holds this value are paged (a connected account's
    /// persons: `type` = `custom`, the only accounts whose persons a platform may read).
    #[serde(default)]
    pub fetch_when_equals: Option<String>,
    /// The `object` of its rows and the field naming their parent (`radar.value_list_item`,
    /// `value_list`), where the rows name it: an event about such an object is a change of its parent.
    #[serde(default)]
    pub item_object: Option<String>,
    #[serde(default)]
    pub parent_field: Option<String>,
    /// Only the items whose `object` is this (`bank_account`): a list of two kinds of objects (an
    /// account's external accounts) split into a table per kind. The table has the `object` column.
    #[serde(default)]
    pub object_filter: Option<String>,
    pub columns: Vec<Column>,
    /// A table of a platform's connected accounts' data: named `connected_account_<table>`, with the
    /// [`ACCOUNT`] column. Never in the JSON: [`Catalog::connected`] derives these tables.
    #[serde(skip)]
    pub connected: bool,
}

/// The parent a dataset's list needs (`/v1/treasury/transactions?financial_account=fa_…`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerParent {
    /// The query parameter naming the parent.
    pub param: String,
    /// The list of the parents (`/v1/treasury/financial_accounts`).
    pub list_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    /// The product it belongs to (`billing`, `issuing`, …), for listing datasets grouped.
    pub group: String,
    pub list_path: String,
    pub object: String,
    pub required_params: Vec<String>,
    /// Set when the list needs a parent's id (`financial_account` of Treasury's money movements): the
    /// engine lists it once per object of the parent's list.
    #[serde(default)]
    pub per_parent: Option<PerParent>,
    /// Parameters always sent (`status=all` on subscriptions, which hides canceled ones otherwise).
    pub default_params: Vec<(String, String)>,
    pub created_filter: bool,
    /// Without events, its new objects are still listed on every run rather than every
    /// `unannounced_interval_secs` (balance transactions, a platform's connected accounts).
    pub new_objects_every_run: bool,
    /// Whether one of its events announces a new object (`*.created`, `charge.succeeded`, …). Without,
    /// its new objects are found by listing it every `unannounced_interval_secs`.
    pub announces_creation: bool,
    pub event_types: Vec<String>,
    pub delete_events: Vec<String>,
    pub tables: Vec<Table>,
}

impl Table {
    /// Whether a fetched table's list is to be paged for `parent` (`fetch_when`, `fetch_when_equals`).
    pub fn fetched_for(&self, parent: &serde_json::Value) -> bool {
        let Some(field) = &self.fetch_when else {
            return true;
        };
        match (parent.get(field), &self.fetch_when_equals) {
            (None | Some(serde_json::Value::Null), _) => false,
            (Some(value), Some(equals)) => value.as_str() == Some(equals.as_str()),
            (Some(_), None) => true,
        }
    }
}

impl Dataset {
    /// The list's path under `/v1/` (`checkout/sessions`): how Stripe, and the simulator's ground
    /// truth, name the resource.
    pub fn resource(&self) -> &str {
        self.list_path.trim_start_matches("/v1/")
    }

    /// The field naming the parent of an object of type `object` that lives in one of this dataset's
    /// child tables (`value_list` for `radar.value_list_item`): its events are changes of the parent.
    pub fn parent_field_of(&self, object: &str) -> Option<&str> {
        self.tables
            .iter()
            .filter(|t| t.item_object.as_deref() == Some(object))
            .find_map(|t| t.parent_field.as_deref())
    }

    pub fn main_table(&self) -> &Table {
        self.tables
            .iter()
            .find(|t| t.kind == TableKind::Main)
            .unwrap_or(&self.tables[0])
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub api_version: String,
    pub generated_from: String,
    /// The datasets of a merchant's own objects: what "every dataset" means.
    pub datasets: Vec<Dataset>,
    /// The datasets only a Connect platform configured with `connect = true` syncs (`accounts`).
    /// In the JSON they are among the datasets; [`Catalog::get`] moves them here.
    #[serde(skip)]
    pub platform: Vec<Dataset>,
}

impl Catalog {
    /// The committed catalog (parsed once).
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| match serde_json::from_str::<Catalog>(CATALOG_JSON) {
            Ok(mut c) => {
                let (platform, own) = c.datasets.into_iter().partition(|d| d.name == ACCOUNTS);
                c.datasets = own;
                c.platform = platform;
                c
            }
            // The file is part of the source tree and tested; a parse error is a build defect.
            Err(e) => panic!("catalog/catalog.json is invalid: {e}"),
        })
    }

    /// A dataset by name, a platform's ones included.
    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets
            .iter()
            .chain(&self.platform)
            .find(|d| d.name == name)
    }

    /// The datasets as a Connect platform stores its connected accounts' data: the same datasets and
    /// columns, every table named `connected_account_<table>` and given the `account` column.
    pub fn connected() -> &'static [Dataset] {
        static CONNECTED: OnceLock<Vec<Dataset>> = OnceLock::new();
        CONNECTED.get_or_init(|| {
            Catalog::get()
                .datasets
                .iter()
                .map(|d| {
                    let mut d = d.clone();
                    for t in &mut d.tables {
                        t.name = format!("{CONNECTED_PREFIX}{}", t.name);
                        t.connected = true;
                    }
                    d
                })
                .collect()
        })
    }

    /// Every table of every dataset.
    pub fn tables(&self) -> impl Iterator<Item = (&Dataset, &Table)> {
        self.datasets
            .iter()
            .flat_map(|d| d.tables.iter().map(move |t| (d, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_catalog_parses_and_has_the_core_tables() {
        let c = Catalog::get();
        assert_eq!(c.api_version, "2023-08-16");
        let names: Vec<&str> = c.tables().map(|(_, t)| t.name.as_str()).collect();
        for t in [
            "charges",
            "charges_metadata",
            "balance_transactions",
            "balance_transaction_fee_details",
            "invoice_line_items",
            "subscription_items",
            "customers",
        ] {
            assert!(names.contains(&t), "{t}");
        }
        let charges = c.dataset("charges").unwrap().main_table();
        assert_eq!(charges.columns[0].name, "id");
        let col = |n: &str| {
            charges
                .columns
                .iter()
                .find(|c| c.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert_eq!(col("amount").kind, ColumnType::Int64);
        assert_eq!(col("created").kind, ColumnType::Timestamp);
        assert!(col("customer_id").reference);
        let mut seen = std::collections::HashSet::new();
        for (_, t) in c.tables() {
            assert!(seen.insert(&t.name), "table {} twice", t.name);
            // PostgreSQL cuts identifiers at 63 bytes: longer names would collide there.
            for col in &t.columns {
                assert!(col.name.len() <= 63, "{}.{} is too long", t.name, col.name);
            }
            for reserved in [MERCHANT_ID, BATCH_TIMESTAMP, DELETED] {
                assert!(
                    t.columns.iter().all(|c| c.name != reserved),
                    "{} has {reserved}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn a_platforms_tables_are_apart_and_connected_tables_mirror_every_dataset() {
        let c = Catalog::get();
        assert!(c.datasets.iter().all(|d| d.name != ACCOUNTS));
        let accounts = c.dataset(ACCOUNTS).unwrap();
        assert_eq!(accounts.main_table().name, "connected_accounts");
        assert!(accounts.event_types.is_empty() && accounts.created_filter);
        assert_eq!(c.platform.len(), 1);
        let connected = Catalog::connected();
        assert_eq!(connected.len(), c.datasets.len());
        for (own, theirs) in c.datasets.iter().zip(connected) {
            assert_eq!(own.name, theirs.name);
            for (t, ct) in own.tables.iter().zip(&theirs.tables) {
                assert_eq!(ct.name, format!("{CONNECTED_PREFIX}{}", t.name));
                assert!(ct.connected && !t.connected);
                assert_eq!(ct.columns.len(), t.columns.len());
            }
        }
    }
}
