//! JSON objects → Arrow record batches, one set of column builders per catalog table.
//!
//! Values that do not fit their column (a string where a number was expected, a field Stripe added later)
//! never fail a sync: unmapped fields are ignored (the catalog decides the columns) and mismatched values
//! become null and are counted, so a surprise in the data is visible without losing the rest of the row.

use crate::catalog::{
    Column, ColumnType, Dataset, Table, TableKind, BATCH_TIMESTAMP, DELETED, MERCHANT_ID,
};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::sync::Arc;

/// The Arrow type of a catalog column.
pub fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The columns of a table as stored: catalog columns (metadata: parent key, key, value; child: parent
/// key first), then `merchant_id`, `batch_timestamp`, `deleted`.
pub fn table_columns(table: &Table) -> Vec<(String, ColumnType)> {
    let mut cols: Vec<(String, ColumnType)> = Vec::new();
    let parent = table
        .parent_key
        .clone()
        .unwrap_or_else(|| "parent_id".into());
    match table.kind {
        TableKind::Main => {}
        TableKind::Metadata => {
            cols.push((parent, ColumnType::String));
            cols.push(("key".into(), ColumnType::String));
            cols.push(("value".into(), ColumnType::String));
        }
        TableKind::Child => cols.push((parent, ColumnType::String)),
    }
    cols.extend(table.columns.iter().map(|c| (c.name.clone(), c.kind)));
    cols.push((MERCHANT_ID.into(), ColumnType::String));
    cols.push((BATCH_TIMESTAMP.into(), ColumnType::Timestamp));
    cols.push((DELETED.into(), ColumnType::Bool));
    cols
}

pub fn table_schema(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        table_columns(table)
            .into_iter()
            .map(|(name, kind)| Field::new(name, arrow_type(kind), true))
            .collect::<Vec<_>>(),
    ))
}

enum Builder {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: ColumnType) -> Builder {
        match kind {
            ColumnType::String | ColumnType::Json => Builder::Str(StringBuilder::new()),
            ColumnType::Int64 => Builder::I64(Int64Builder::new()),
            ColumnType::Float64 => Builder::F64(Float64Builder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
        }
    }

    fn null(&mut self) {
        match self {
            Builder::Str(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
        }
    }

    fn str(&mut self, s: &str) {
        if let Builder::Str(b) = self {
            b.append_value(s);
        }
    }

    /// Appends `value` as this column's type; returns false (and appends null) when it does not fit.
    fn value(&mut self, col: &Column, value: Option<&Value>) -> bool {
        let Some(v) = value.filter(|v| !v.is_null()) else {
            self.null();
            return true;
        };
        match (self, col.kind) {
            (Builder::Str(b), ColumnType::Json) => {
                b.append_value(v.to_string());
                true
            }
            (Builder::Str(b), _) => match scalar_text(col, v) {
                Some(s) => {
                    b.append_value(s);
                    true
                }
                None => {
                    b.append_null();
                    false
                }
            },
            (Builder::I64(b), _) => append_opt(b, v.as_i64()),
            (Builder::F64(b), _) => append_opt(b, v.as_f64()),
            (Builder::Bool(b), _) => {
                b.append_option(v.as_bool());
                v.is_boolean()
            }
            (Builder::Ts(b), _) => append_opt(b, v.as_i64().and_then(|s| s.checked_mul(1_000_000))),
        }
    }
}

fn append_opt<T: arrow::datatypes::ArrowPrimitiveType>(
    b: &mut arrow::array::PrimitiveBuilder<T>,
    v: Option<T::Native>,
) -> bool {
    b.append_option(v);
    v.is_some()
}

/// Text of a string column: references take `id` of an expanded object; lists join with commas.
fn scalar_text(col: &Column, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) if col.reference => {
            o.get("id").and_then(Value::as_str).map(str::to_string)
        }
        Value::Array(items) if col.join => Some(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn lookup<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k.as_str()))
}

/// Rows of one table being built.
pub struct TableRows {
    pub table: Table,
    schema: SchemaRef,
    builders: Vec<Builder>,
    pub rows: usize,
}

impl TableRows {
    fn new(table: &Table) -> TableRows {
        TableRows {
            schema: table_schema(table),
            builders: table_columns(table)
                .iter()
                .map(|(_, k)| Builder::new(*k))
                .collect(),
            table: table.clone(),
            rows: 0,
        }
    }

    /// The rows so far as a record batch; the builders start over.
    pub fn take(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).ok()
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// What every row of one object shares.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    pub merchant_id: &'a str,
    /// Microseconds since the epoch.
    pub batch_timestamp: i64,
    pub deleted: bool,
}

/// Converts a dataset's objects into rows of all its tables.
pub struct Converter {
    pub tables: Vec<TableRows>,
    /// Values that did not fit their column (set to null).
    pub mismatches: u64,
}

impl Converter {
    pub fn new(dataset: &Dataset) -> Converter {
        Converter {
            tables: dataset.tables.iter().map(TableRows::new).collect(),
            mismatches: 0,
        }
    }

    /// Rows buffered in all tables.
    pub fn buffered(&self) -> usize {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Adds one object (with its nested lists already complete).
    pub fn push(&mut self, obj: &Value, ctx: RowContext<'_>) {
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default();
        let mut mismatches = 0;
        for t in &mut self.tables {
            match t.table.kind {
                TableKind::Main => {
                    let n = t.table.columns.len();
                    for (col, b) in t.table.columns.iter().zip(&mut t.builders[..n]) {
                        if !b.value(col, lookup(obj, &col.path)) {
                            mismatches += 1;
                        }
                    }
                    implicit(&mut t.builders[n..], ctx);
                    t.rows += 1;
                }
                TableKind::Metadata => {
                    let Some(map) = lookup(obj, &t.table.source).and_then(Value::as_object) else {
                        continue;
                    };
                    for (k, v) in map {
                        t.builders[0].str(id);
                        t.builders[1].str(k);
                        match v {
                            Value::String(s) => t.builders[2].str(s),
                            Value::Null => t.builders[2].null(),
                            other => t.builders[2].str(&other.to_string()),
                        }
                        implicit(&mut t.builders[3..], ctx);
                        t.rows += 1;
                    }
                }
                TableKind::Child => {
                    let items = match lookup(obj, &t.table.source) {
                        Some(Value::Array(a)) => a.as_slice(),
                        Some(Value::Object(list)) => list
                            .get("data")
                            .and_then(Value::as_array)
                            .map(Vec::as_slice)
                            .unwrap_or_default(),
                        _ => &[],
                    };
                    let n = t.table.columns.len();
                    for item in items {
                        t.builders[0].str(id);
                        for (col, b) in t.table.columns.iter().zip(&mut t.builders[1..=n]) {
                            if !b.value(col, lookup(item, &col.path)) {
                                mismatches += 1;
                            }
                        }
                        implicit(&mut t.builders[n + 1..], ctx);
                        t.rows += 1;
                    }
                }
            }
        }
        self.mismatches += mismatches;
    }
}

fn implicit(builders: &mut [Builder], ctx: RowContext<'_>) {
    if let [Builder::Str(m), Builder::Ts(ts), Builder::Bool(d)] = builders {
        m.append_value(ctx.merchant_id);
        ts.append_value(ctx.batch_timestamp);
        d.append_value(ctx.deleted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use arrow::array::{Array, AsArray};
    use serde_json::json;

    fn ctx() -> RowContext<'static> {
        RowContext {
            merchant_id: "acct_1",
            batch_timestamp: 5_000_000,
            deleted: false,
        }
    }

    #[test]
    fn objects_become_rows_of_every_table() {
        let ds = Catalog::get().dataset("balance_transactions").unwrap();
        let mut c = Converter::new(ds);
        let bt = json!({"id": "txn_1", "amount": 100, "fee": 33, "created": 1_700_000_000, "source": {"id": "ch_1", "object": "charge"},
            "fee_details": [{"amount": 33, "currency": "usd", "type": "stripe_fee", "description": "Stripe fees", "application": null}],
            "surprise_new_field": {"x": 1}});
        c.push(&bt, ctx());
        let main = c.tables[0].take().unwrap();
        let col = |b: &RecordBatch, n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        assert_eq!(
            col(&main, "amount")
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            100
        );
        assert_eq!(col(&main, "source_id").as_string::<i32>().value(0), "ch_1");
        assert_eq!(
            col(&main, "created")
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_700_000_000_000_000
        );
        assert_eq!(
            col(&main, "merchant_id").as_string::<i32>().value(0),
            "acct_1"
        );
        let fees = c
            .tables
            .iter_mut()
            .find(|t| t.table.name == "balance_transaction_fee_details")
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(fees.num_rows(), 1);
        assert_eq!(
            col(&fees, "balance_transaction_id")
                .as_string::<i32>()
                .value(0),
            "txn_1"
        );
        assert_eq!(c.mismatches, 0);
    }

    #[test]
    fn metadata_rows_and_mismatched_values() {
        let ds = Catalog::get().dataset("customers").unwrap();
        let mut c = Converter::new(ds);
        c.push(&json!({"id": "cus_1", "balance": "not a number", "metadata": {"a": "1", "région": "Île"}}), ctx());
        assert_eq!(c.mismatches, 1);
        let main = c.tables[0].take().unwrap();
        let bal = main.column(main.schema().index_of("balance").unwrap());
        assert!(bal.is_null(0));
        let meta = c
            .tables
            .iter_mut()
            .find(|t| t.table.name == "customers_metadata")
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(meta.num_rows(), 2);
        assert_eq!(meta.schema().field(0).name(), "customer_id");
    }
}
