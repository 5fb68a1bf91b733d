//! JSON objects → Arrow record batches, one set of column builders per catalog table.
//!
//! Values that do not fit their column (a string where a number was expected, a field Stripe added later)
//! never fail a sync: unmapped fields are ignored (the catalog decides the columns) and mismatched values
//! become null and are counted, so a surprise in the data is visible without losing the rest of the row.

use crate::catalog::{
    ColumnType, Dataset, Table, TableKind, ACCOUNT, BATCH_TIMESTAMP, DELETED, MERCHANT_ID,
};
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use walk::{Cell, ObjectRows, Plan, Text};

pub use walk::compact;

mod walk;

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
/// key first), then `merchant_id` (and `account` in a connected account's table), `batch_timestamp`,
/// `deleted`.
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
    if table.connected {
        cols.push((ACCOUNT.into(), ColumnType::String));
    }
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

    /// An empty builder of the same type, with room for `capacity`.
    fn with_capacity(&self, capacity: Capacity) -> Builder {
        let Capacity { rows, bytes } = capacity;
        match self {
            Builder::Str(_) => Builder::Str(StringBuilder::with_capacity(rows, bytes)),
            Builder::I64(_) => Builder::I64(Int64Builder::with_capacity(rows)),
            Builder::F64(_) => Builder::F64(Float64Builder::with_capacity(rows)),
            Builder::Bool(_) => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Builder::Ts(_) => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows)),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            Builder::Str(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Bool(b) => b.len(),
            Builder::Ts(b) => b.len(),
        }
    }

    /// Nulls up to row `row`: the rows since this column last had a value. Missing values are never
    /// appended one by one; most columns of a wide table are null in most rows.
    #[inline]
    fn pad(&mut self, row: usize) {
        let missing = row.saturating_sub(self.len());
        if missing > 0 {
            self.append_nulls(missing);
        }
    }

    fn append_nulls(&mut self, missing: usize) {
        match self {
            Builder::Str(b) => b.append_nulls(missing),
            Builder::I64(b) => b.append_nulls(missing),
            Builder::F64(b) => b.append_nulls(missing),
            Builder::Bool(b) => b.append_nulls(missing),
            Builder::Ts(b) => b.append_nulls(missing),
        }
    }

    /// Sets row `row` (this column's next) to `s`.
    fn str(&mut self, row: usize, s: &str) {
        self.pad(row);
        if let Builder::Str(b) = self {
            b.append_value(s);
        }
    }

    /// Sets row `row` (this column's next) to `cell` as this column's type; returns false (and leaves
    /// the row null) when it does not fit.
    fn cell(&mut self, row: usize, kind: ColumnType, cell: &Cell<'_>) -> bool {
        if matches!(cell, Cell::Null) {
            return true;
        }
        self.pad(row);
        match self {
            Builder::Str(b) => {
                let text: Option<Cow<'_, str>> = match cell {
                    Cell::Str(s) => Some(Cow::Borrowed(s.as_ref())),
                    Cell::I64(i) if kind != ColumnType::Json => Some(Cow::Owned(i.to_string())),
                    Cell::U64(u) if kind != ColumnType::Json => Some(Cow::Owned(u.to_string())),
                    Cell::F64(f) if kind != ColumnType::Json => {
                        Some(Cow::Owned(Value::from(*f).to_string()))
                    }
                    Cell::Bool(v) if kind != ColumnType::Json => {
                        Some(Cow::Borrowed(if *v { "true" } else { "false" }))
                    }
                    _ => None,
                };
                text.map(|t| b.append_value(t)).is_some()
            }
            Builder::I64(b) => cell.as_i64().map(|v| b.append_value(v)).is_some(),
            Builder::F64(b) => match *cell {
                Cell::I64(i) => Some(i as f64),
                Cell::U64(u) => Some(u as f64),
                Cell::F64(f) => Some(f),
                _ => None,
            }
            .map(|v| b.append_value(v))
            .is_some(),
            Builder::Bool(b) => match *cell {
                Cell::Bool(v) => Some(v),
                _ => None,
            }
            .map(|v| b.append_value(v))
            .is_some(),
            Builder::Ts(b) => cell
                .as_i64()
                .and_then(|s| s.checked_mul(1_000_000))
                .map(|v| b.append_value(v))
                .is_some(),
        }
    }
}

/// Room reserved in a column's builder.
#[derive(Debug, Clone, Copy, Default)]
struct Capacity {
    rows: usize,
    /// String data (string columns only).
    bytes: usize,
}

impl Capacity {
    /// What `array` (a builder's last batch) took: rows, and bytes of string data.
    fn of(array: &dyn arrow::array::Array) -> Capacity {
        use arrow::array::AsArray;
        Capacity {
            rows: array.len(),
            bytes: array
                .as_string_opt::<i32>()
                .map_or(0, |s| s.value_data().len()),
        }
    }
}

/// Rows of one table being built.
pub struct TableRows {
    pub table: Table,
    schema: SchemaRef,
    builders: Vec<Builder>,
    pub rows: usize,
    /// Per builder, the size of the last batch taken: the next one starts with that much room
    /// instead of growing to it by doubling (each step a copy of everything so far).
    last: Vec<Capacity>,
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
            last: Vec::new(),
        }
    }

    /// Before the first row of a batch: gives the builders the room the last batch took. Done here
    /// rather than in [`TableRows::take`], where the last batch's arrays are still alive.
    fn reserve(&mut self) {
        if self.rows > 0 || self.last.is_empty() {
            return;
        }
        for (b, capacity) in self.builders.iter_mut().zip(self.last.drain(..)) {
            *b = b.with_capacity(capacity);
        }
    }

    /// The rows so far as a record batch; the builders start over. An error (columns that do not fit
    /// the schema they were made from) is a bug, reported rather than dropped: rows must never vanish
    /// between a page and its file.
    pub fn take(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let rows = self.rows;
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| {
                b.pad(rows);
                b.finish()
            })
            .collect();
        self.last = arrays.iter().map(|a| Capacity::of(a.as_ref())).collect();
        self.rows = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let Some(kind) = &self.table.object_filter else {
            return Ok(Some(batch));
        };
        // The items of the other kind were converted too (a list's items are walked as they
        // stream by, before their `object` is known); they are dropped here, whole rows at once.
        let keep = match batch.column_by_name("object") {
            Some(object) => {
                let kind = arrow::array::StringArray::new_scalar(kind.as_str());
                arrow::compute::kernels::cmp::eq(object, &kind)?
            }
            None => arrow::array::BooleanArray::from(vec![false; batch.num_rows()]),
        };
        let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
        Ok((kept.num_rows() > 0).then_some(kept))
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// What every row of one object shares.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    pub merchant_id: &'a str,
    /// The connected account whose object this is, in a platform's `connected_account_*` tables.
    pub account: Option<&'a str>,
    /// Microseconds since the epoch.
    pub batch_timestamp: i64,
    pub deleted: bool,
}

/// Converts a dataset's objects into rows of all its tables.
pub struct Converter {
    pub tables: Vec<TableRows>,
    plan: Plan,
    /// The dataset's `object` (what a deleted object's row says it was).
    object: String,
    /// Values that did not fit their column (set to null).
    pub mismatches: u64,
}

/// What one list page held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageSummary {
    /// Objects in `data`.
    pub objects: usize,
    pub has_more: bool,
    /// `id` and `created` of the last object (the next page's cursor).
    pub last: Option<(String, Option<i64>)>,
    /// Objects whose nested lists were cut off: their other rows are in, the lists are not.
    pub truncated: Vec<Truncated>,
}

/// An object of a page whose nested lists were cut off (`has_more`). Its row and the rows of its other
/// tables were added with the page; each of `tables` (indexes into the dataset's tables) is to be paged
/// from the table's `nested_list_path` and given to [`Converter::push_items`].
#[derive(Debug, Clone, PartialEq)]
pub struct Truncated {
    pub id: String,
    pub tables: Vec<usize>,
}

impl Converter {
    pub fn new(dataset: &Dataset) -> Converter {
        Converter {
            tables: dataset.tables.iter().map(TableRows::new).collect(),
            plan: Plan::new(&dataset.tables),
            object: dataset.object.clone(),
            mismatches: 0,
        }
    }

    /// Makes room in the tables of a batch that is starting (see [`TableRows::reserve`]).
    fn reserve(&mut self) {
        for table in &mut self.tables {
            table.reserve();
        }
    }

    /// Rows buffered in all tables.
    pub fn buffered(&self) -> usize {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Adds one object (with its nested lists already complete); returns the bytes of its JSON text.
    pub fn push(&mut self, obj: &Value, ctx: RowContext<'_>) -> usize {
        // The walk reads text: a parsed object is written out and read like a page's (rare: events and
        // completed objects), so there is one conversion, not two. Text written from a `Value` always
        // walks; mismatches become nulls.
        let text = obj.to_string();
        self.reserve();
        let mut rows = ObjectRows::default();
        let mut de = serde_json::Deserializer::from_str(&text);
        if walk::object(&self.plan, &mut de, &mut rows).is_ok() {
            // Lists still cut off here are converted as far as they go.
            rows.truncated.clear();
            self.mismatches += append(&mut self.tables, &self.plan, &rows, ctx);
        }
        text.len()
    }

    /// Adds the items of one nested list of object `parent_id` (a child table's rows, after the list
    /// was paged to its end: see [`Truncated`]); returns the bytes of their JSON text.
    pub fn push_items(
        &mut self,
        table: usize,
        parent_id: &str,
        items: &[Value],
        ctx: RowContext<'_>,
    ) -> usize {
        self.reserve();
        let mut bytes = 0;
        for item in items {
            let text = item.to_string();
            bytes += text.len();
            let mut rows = ObjectRows::default();
            let mut de = serde_json::Deserializer::from_str(&text);
            if walk::item(&self.plan, table, &mut de, &mut rows).is_ok() {
                self.mismatches +=
                    append_children(&mut self.tables, &self.plan, &rows, parent_id, ctx);
            }
        }
        bytes
    }

    /// Adds the row of a deleted object: its id and `object`, every other column null (the
    /// warehouse keeps the last version's columns and only sets `deleted`).
    pub fn push_deleted(&mut self, id: &str, ctx: RowContext<'_>) {
        self.reserve();
        let plan = &self.plan;
        let Some(table) = self
            .tables
            .iter_mut()
            .find(|t| t.table.kind == TableKind::Main)
        else {
            return;
        };
        let row = table.rows;
        for (col, value) in [(plan.id_col(), id), (plan.object_col(), &self.object)] {
            if let Some(b) = col.and_then(|c| table.builders.get_mut(c)) {
                b.str(row, value);
            }
        }
        implicit(&mut table.builders[plan.main_columns().len()..], ctx);
        table.rows += 1;
    }

    /// Converts a list page straight from its JSON text (`{"data": [...], "has_more": …}`), parsed
    /// once.
    ///
    /// Nested lists that were cut off are named in the summary. On an error (the text is not JSON)
    /// rows of objects before the error may have been added: drop the converter.
    pub fn push_page(
        &mut self,
        json: &[u8],
        ctx: RowContext<'_>,
    ) -> Result<PageSummary, serde_json::Error> {
        // One SIMD check of the whole page, so the parser need not check each string it borrows.
        let text = match simdutf8::basic::from_utf8(json) {
            Ok(text) => text,
            Err(_) => {
                let at = std::str::from_utf8(json)
                    .err()
                    .map_or(0, |e| e.valid_up_to());
                return Err(de::Error::custom(format!("invalid UTF-8 at byte {at}")));
            }
        };
        self.reserve();
        let mut de = serde_json::Deserializer::from_str(text);
        let summary = de.deserialize_map(Page { conv: self, ctx })?;
        de.end()?;
        Ok(summary)
    }
}

/// A list page: its `data` and `has_more`; everything else is skipped.
struct Page<'c, 'x> {
    conv: &'c mut Converter,
    ctx: RowContext<'x>,
}

impl<'de> Visitor<'de> for Page<'_, '_> {
    type Value = PageSummary;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list page")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageSummary, A::Error> {
        let mut summary = PageSummary::default();
        let mut saw_data = false;
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "data" => {
                    saw_data = true;
                    map.next_value_seed(Data {
                        conv: &mut *self.conv,
                        ctx: self.ctx,
                        summary: &mut summary,
                    })?;
                }
                "has_more" => summary.has_more = map.next_value::<&RawValue>()?.get() == "true",
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !saw_data {
            return Err(de::Error::custom("the response is not a list (no `data`)"));
        }
        Ok(summary)
    }
}

/// The `data` array of a list page: each object walked and appended as soon as it is read.
struct Data<'c, 'x, 's> {
    conv: &'c mut Converter,
    ctx: RowContext<'x>,
    summary: &'s mut PageSummary,
}

impl<'de> DeserializeSeed<'de> for Data<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Data<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Converter {
            tables,
            plan,
            mismatches,
            ..
        } = self.conv;
        let mut rows = ObjectRows::default();
        let mut last = None;
        while seq
            .next_element_seed(ObjectSeed {
                plan,
                rows: &mut rows,
            })?
            .is_some()
        {
            self.summary.objects += 1;
            let fetched: Vec<usize> = plan.fetched(&rows).collect();
            for t in fetched {
                if !rows.truncated.contains(&t) {
                    rows.truncated.push(t);
                }
            }
            *mismatches += append(tables, plan, &rows, self.ctx);
            let id = rows.id(plan).cloned().unwrap_or_default();
            if !rows.truncated.is_empty() {
                self.summary.truncated.push(Truncated {
                    id: id.to_string(),
                    tables: rows.truncated.clone(),
                });
            }
            last = Some((id, rows.created(plan)));
        }
        // Only the last object's id is kept (the next page's cursor).
        self.summary.last = last.map(|(id, created)| (id.into_owned(), created));
        Ok(())
    }
}

/// One object of a page.
struct ObjectSeed<'p, 'r, 'de> {
    plan: &'p Plan,
    rows: &'r mut ObjectRows<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        walk::object(self.plan, de, self.rows)
    }
}

/// Appends the rows of one object to every table; returns the values that did not fit their column.
/// The rows of nested lists that were cut off are left out (the whole list comes later).
fn append(
    tables: &mut [TableRows],
    plan: &Plan,
    rows: &ObjectRows<'_>,
    ctx: RowContext<'_>,
) -> u64 {
    let id: &str = rows.id(plan).map_or("", |id| id.as_ref());
    let mut mismatches = append_children(tables, plan, rows, id, ctx);
    for (t, table) in tables.iter_mut().enumerate() {
        match table.table.kind {
            TableKind::Main => {
                let row = table.rows;
                let cols = plan.main_columns();
                // Only the columns given a value: the others are padded with nulls later.
                for &i in &rows.set {
                    let fits = table.builders[i].cell(row, cols[i].kind, &rows.main[i]);
                    mismatches += u64::from(!fits);
                }
                implicit(&mut table.builders[cols.len()..], ctx);
                table.rows += 1;
            }
            TableKind::Metadata => {
                for (_, key, value) in rows.metadata.iter().filter(|(mt, _, _)| *mt == t) {
                    let row = table.rows;
                    table.builders[0].str(row, id);
                    table.builders[1].str(row, key);
                    if let Some(v) = value {
                        table.builders[2].str(row, v);
                    }
                    implicit(&mut table.builders[3..], ctx);
                    table.rows += 1;
                }
            }
            TableKind::Child => {}
        }
    }
    mismatches
}

/// Appends the child rows in `rows` (those of lists that were not cut off) under parent `id`.
fn append_children(
    tables: &mut [TableRows],
    plan: &Plan,
    rows: &ObjectRows<'_>,
    id: &str,
    ctx: RowContext<'_>,
) -> u64 {
    let mut mismatches = 0;
    for (t, cells) in &rows.children {
        if rows.truncated.contains(t) {
            continue;
        }
        let Some(table) = tables.get_mut(*t) else {
            continue;
        };
        let cols = plan.columns_of(*t);
        let row = table.rows;
        table.builders[0].str(row, id);
        for ((col, cell), b) in cols.iter().zip(cells).zip(&mut table.builders[1..]) {
            mismatches += u64::from(!b.cell(row, col.kind, cell));
        }
        implicit(&mut table.builders[cols.len() + 1..], ctx);
        table.rows += 1;
    }
    mismatches
}

/// `merchant_id` (and `account`), `batch_timestamp` and `deleted`: set in every row, so never padded.
fn implicit(builders: &mut [Builder], ctx: RowContext<'_>) {
    match builders {
        [Builder::Str(m), Builder::Ts(ts), Builder::Bool(d)] => {
            m.append_value(ctx.merchant_id);
            ts.append_value(ctx.batch_timestamp);
            d.append_value(ctx.deleted);
        }
        [Builder::Str(m), Builder::Str(a), Builder::Ts(ts), Builder::Bool(d)] => {
            m.append_value(ctx.merchant_id);
            a.append_option(ctx.account);
            ts.append_value(ctx.batch_timestamp);
            d.append_value(ctx.deleted);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use arrow::array::{Array, ArrayRef, AsArray};
    use serde_json::json;

    fn ctx() -> RowContext<'static> {
        RowContext {
            merchant_id: "acct_1",
            account: None,
            batch_timestamp: 5_000_000,
            deleted: false,
        }
    }

    #[test]
    fn a_connected_accounts_table_has_account_beside_merchant_id() {
        let names =
            |t: &Table| -> Vec<String> { table_columns(t).into_iter().map(|(n, _)| n).collect() };
        let own = names(Catalog::get().dataset("charges").unwrap().main_table());
        let connected = Catalog::connected().iter().find(|d| d.name == "charges");
        let theirs = names(connected.unwrap().main_table());
        assert_eq!(theirs.len(), own.len() + 1);
        let m = theirs.iter().position(|n| n == MERCHANT_ID).unwrap();
        assert_eq!(theirs[m + 1], ACCOUNT);
        assert!(!own.iter().any(|n| n == ACCOUNT));
        // Its rows carry the account; a merchant's own rows have no such column.
        let mut conv = Converter::new(connected.unwrap());
        let row = RowContext {
            account: Some("acct_connected"),
            ..ctx()
        };
        conv.push_deleted("ch_1", row);
        let batch = conv.tables[0].take().unwrap().unwrap();
        let account = batch.column_by_name(ACCOUNT).unwrap().as_string::<i32>();
        assert_eq!(account.value(0), "acct_connected");
    }

    #[test]
    fn persons_are_paged_for_custom_accounts_only() {
        let ds = Catalog::get().dataset("accounts").unwrap();
        let t = |name: &str| ds.tables.iter().position(|t| t.name == name).unwrap();
        let (persons, capabilities) = (t("account_persons"), t("account_capabilities"));
        let accounts = [
            ("acct_1", json!("custom")),
            ("acct_2", json!("express")),
            ("acct_3", Value::Null),
        ];
        let data: Vec<Value> = accounts
            .iter()
            .map(|(id, kind)| json!({"id": id, "object": "account", "type": kind}))
            .collect();
        let page =
            json!({"object": "list", "url": "/v1/accounts", "has_more": false, "data": data});
        let summary = Converter::new(ds)
            .push_page(&serde_json::to_vec(&page).unwrap(), ctx())
            .unwrap();
        let got: Vec<(&str, Vec<usize>)> = summary
            .truncated
            .iter()
            .map(|tr| (tr.id.as_str(), tr.tables.clone()))
            .collect();
        let want = vec![
            ("acct_1", vec![persons, capabilities]),
            ("acct_2", vec![capabilities]),
            ("acct_3", vec![capabilities]),
        ];
        assert_eq!(got, want);
        // An object read on its own decides the same way.
        for (obj, (_, tables)) in data.iter().zip(&want) {
            assert_eq!(
                ds.tables[persons].fetched_for(obj),
                tables.contains(&persons)
            );
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
        let main = c.tables[0].take().unwrap().unwrap();
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
        let fees = take(&mut c, "balance_transaction_fee_details");
        assert_eq!(fees.num_rows(), 1);
        assert_eq!(
            col(&fees, "balance_transaction_id")
                .as_string::<i32>()
                .value(0),
            "txn_1"
        );
        assert_eq!(c.mismatches, 0);
    }

    /// The rows of table `name` so far.
    fn take(c: &mut Converter, name: &str) -> RecordBatch {
        c.tables
            .iter_mut()
            .find(|t| t.table.name == name)
            .and_then(|t| t.take().unwrap())
            .unwrap()
    }

    fn batches(c: &mut Converter) -> Vec<Option<RecordBatch>> {
        c.tables.iter_mut().map(|t| t.take().unwrap()).collect()
    }

    /// Every dataset with the objects of the `tiny` simulator's first live account.
    fn tiny_truth() -> Vec<(&'static Dataset, Vec<Value>)> {
        let sim = stripe_sim::Simulator::new(stripe_sim::SimConfig::tiny());
        let info = sim.info("");
        let account = &info.accounts[0].id;
        Catalog::get()
            .datasets
            .iter()
            .map(|ds| {
                let objects = sim
                    .truth(account, true, &ds.name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| t["object"].clone())
                    .collect();
                (ds, objects)
            })
            .collect()
    }

    /// A converter kept from batch to batch starts each one with the room the last one took; a
    /// smaller or larger batch after it must still come out exactly as from a fresh converter.
    #[test]
    fn batches_after_the_first_are_built_like_fresh_ones() {
        for (ds, objects) in tiny_truth() {
            let n = objects.len();
            let pages: Vec<Vec<u8>> = [n, n.min(1), n / 2, n]
                .iter()
                .map(|&n| {
                    let page = json!({"object": "list", "has_more": false, "data": objects[..n]});
                    serde_json::to_vec(&page).unwrap()
                })
                .collect();
            let mut kept = Converter::new(ds);
            for (i, page) in pages.iter().enumerate() {
                kept.push_page(page, ctx()).unwrap();
                let mut fresh = Converter::new(ds);
                fresh.push_page(page, ctx()).unwrap();
                assert_eq!(
                    batches(&mut kept),
                    batches(&mut fresh),
                    "{} page {i}",
                    ds.name
                );
            }
        }
    }

    #[test]
    fn pages_convert_exactly_like_parsed_objects() {
        for (ds, mut objects) in tiny_truth() {
            // A list page never holds a fetched table's list (the truth does): every object has it
            // to be paged, and neither conversion has its rows.
            let fetched: Vec<usize> = (0..ds.tables.len())
                .filter(|&t| ds.tables[t].fetch && !ds.tables[t].expand)
                .collect();
            for o in &mut objects {
                for &t in &fetched {
                    o.as_object_mut().unwrap().remove(&ds.tables[t].source[0]);
                }
            }
            let page = json!({"object": "list", "url": "/v1/x", "has_more": true, "data": objects});
            let text = serde_json::to_vec(&page).unwrap();
            let mut fast = Converter::new(ds);
            let summary = fast.push_page(&text, ctx()).unwrap();
            assert_eq!(summary.objects, objects.len(), "{}", ds.name);
            assert!(summary.has_more);
            // Every object has them to be paged, but those whose hint (`fetch_when`) says it has none.
            let want: Vec<(&str, Vec<usize>)> = objects
                .iter()
                .map(|o| {
                    let tables: Vec<usize> = fetched
                        .iter()
                        .copied()
                        .filter(|&t| ds.tables[t].fetched_for(o))
                        .collect();
                    (o["id"].as_str().unwrap(), tables)
                })
                .filter(|(_, tables)| !tables.is_empty())
                .collect();
            let got: Vec<(&str, Vec<usize>)> = summary
                .truncated
                .iter()
                .map(|t| (t.id.as_str(), t.tables.clone()))
                .collect();
            assert_eq!(got, want, "{}: truth has complete lists", ds.name);
            if let Some(last) = objects.last() {
                assert_eq!(
                    summary.last.as_ref().map(|l| l.0.as_str()),
                    last["id"].as_str()
                );
            }
            let mut slow = Converter::new(ds);
            for o in &objects {
                slow.push(o, ctx());
            }
            assert_eq!(batches(&mut fast), batches(&mut slow), "{}", ds.name);
            assert_eq!(fast.mismatches, slow.mismatches);
        }
    }

    /// `v` as JSON text whose objects have their keys in an order that depends on `salt`, with an
    /// unknown key added and, for some salts, a key written with an escape.
    fn shuffled(v: &Value, salt: usize, out: &mut String) {
        match v {
            Value::Object(members) => {
                let mut members: Vec<(String, &Value)> = members
                    .iter()
                    .map(|(k, v)| (Value::from(k.as_str()).to_string(), v))
                    .collect();
                let junk = json!([1, "x", [null, true, "{"]]);
                members.insert(salt % (members.len() + 1), ("\"zz_unknown\"".into(), &junk));
                let n = members.len();
                members.rotate_left(salt % n);
                if salt % 2 == 1 {
                    members.reverse();
                }
                if salt % 4 == 1 {
                    let (key, _) = &mut members[salt % n];
                    let first = key[1..].chars().next().filter(|c| (*c as u32) < 0x1_0000);
                    if let Some(c) = first.filter(|c| *c != '"') {
                        *key = format!("\"\\u{:04x}{}", c as u32, &key[1 + c.len_utf8()..]);
                    }
                }
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(key);
                    out.push(':');
                    shuffled(value, salt, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    shuffled(item, salt, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    /// The walk expects each key where the last object had it; objects whose keys come in another
    /// order, with unknown keys or escaped ones, must convert as they do alone.
    #[test]
    fn keys_in_any_order_convert_as_they_do_alone() {
        for (ds, objects) in tiny_truth() {
            let texts: Vec<String> = objects
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let mut text = String::new();
                    // Runs of three objects share an order: the expected keys are right, then wrong.
                    shuffled(o, i / 3, &mut text);
                    text
                })
                .collect();
            let page = |texts: &[String]| {
                format!(r#"{{"has_more":false,"data":[{}]}}"#, texts.join(",")).into_bytes()
            };
            let mut kept = Converter::new(ds);
            let summary = kept.push_page(&page(&texts), ctx()).unwrap();
            assert_eq!(summary.objects, objects.len(), "{}", ds.name);
            let together = batches(&mut kept);
            let mut alone: Vec<Vec<RecordBatch>> = vec![Vec::new(); ds.tables.len()];
            for text in &texts {
                let mut c = Converter::new(ds);
                c.push_page(&page(std::slice::from_ref(text)), ctx())
                    .unwrap();
                for (t, batch) in batches(&mut c).into_iter().enumerate() {
                    alone[t].extend(batch);
                }
            }
            for ((table, together), alone) in ds.tables.iter().zip(together).zip(alone) {
                let alone = (!alone.is_empty())
                    .then(|| arrow::compute::concat_batches(&alone[0].schema(), &alone).unwrap());
                assert_eq!(together, alone, "{}", table.name);
            }
        }
    }

    /// Any value as the converter writes it as text: strings as they are, anything else as JSON.
    fn as_text(v: &Value) -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// What a column should hold for `v` (the value at its path), as JSON, by an independent route.
    fn expected(col: &crate::catalog::Column, v: &Value) -> Value {
        let text = |t: Option<String>| t.map_or(Value::Null, Value::from);
        match (col.kind, v) {
            (_, Value::Null) => Value::Null,
            (ColumnType::Json, v) => v.clone(),
            (ColumnType::String, Value::Object(o)) if col.reference => {
                text(o.get("id").and_then(as_text))
            }
            (ColumnType::String, Value::Array(items)) if col.join => Value::String(
                items
                    .iter()
                    .map(|i| as_text(i).unwrap_or_else(|| "null".into()))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (ColumnType::String, Value::Object(_) | Value::Array(_)) => Value::Null,
            (ColumnType::String, v) => text(as_text(v)),
            (ColumnType::Int64, v) => v.as_i64().map_or(Value::Null, Value::from),
            (ColumnType::Float64, v) => v.as_f64().map_or(Value::Null, Value::from),
            (ColumnType::Bool, v) => v.as_bool().map_or(Value::Null, Value::from),
            (ColumnType::Timestamp, v) => v
                .as_i64()
                .and_then(|s| s.checked_mul(1_000_000))
                .map_or(Value::Null, Value::from),
        }
    }

    /// What the Arrow array holds at `row`, as JSON (JSON columns parsed).
    fn actual(col: &crate::catalog::Column, array: &ArrayRef, row: usize) -> Value {
        use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
        if array.is_null(row) {
            return Value::Null;
        }
        match col.kind {
            ColumnType::Json => serde_json::from_str(array.as_string::<i32>().value(row)).unwrap(),
            ColumnType::String => Value::from(array.as_string::<i32>().value(row)),
            ColumnType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
            ColumnType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
            ColumnType::Bool => Value::from(array.as_boolean().value(row)),
            ColumnType::Timestamp => {
                Value::from(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
        }
    }

    #[test]
    fn every_column_holds_the_value_at_its_path_in_pretty_printed_pages() {
        let mut checked = 0;
        for (ds, objects) in tiny_truth() {
            // Stripe indents its responses: whitespace everywhere between tokens.
            let page = json!({"object": "list", "has_more": false, "data": objects});
            let text = serde_json::to_vec_pretty(&page).unwrap();
            let mut c = Converter::new(ds);
            c.push_page(&text, ctx()).unwrap();
            let Some(main) = c.tables[0].take().unwrap() else {
                continue;
            };
            for col in &ds.main_table().columns {
                let array = main
                    .column(main.schema().index_of(&col.name).unwrap())
                    .clone();
                for (row, obj) in objects.iter().enumerate() {
                    let v = col
                        .path
                        .iter()
                        .try_fold(obj, |v, k| v.get(k.as_str()))
                        .unwrap_or(&Value::Null);
                    assert_eq!(
                        actual(col, &array, row),
                        expected(col, v),
                        "{}.{} of {}",
                        ds.name,
                        col.name,
                        obj["id"]
                    );
                    checked += 1;
                }
            }
            let metadata: usize = objects
                .iter()
                .filter_map(|o| o.get("metadata").and_then(Value::as_object))
                .map(|m| m.len())
                .sum();
            if let Some(t) = c
                .tables
                .iter()
                .position(|t| t.table.kind == TableKind::Metadata)
            {
                assert_eq!(c.tables[t].rows, metadata, "{}", ds.name);
            }
        }
        assert!(checked > 10_000, "{checked} values checked");
    }

    #[test]
    fn every_object_of_a_page_has_its_fetched_lists_paged_and_a_read_object_carries_them() {
        let ds = Catalog::get().dataset("setup_intents").unwrap();
        let attempts = ds
            .tables
            .iter()
            .position(|t| t.name == "setup_attempts")
            .unwrap();
        // Only a setup intent with a latest attempt has attempts to page.
        let page = json!({"object": "list", "has_more": false, "data": [
            {"id": "seti_1", "created": 5, "latest_attempt": "setatt_1"},
            {"id": "seti_2", "created": 4, "latest_attempt": null},
            {"id": "seti_4", "created": 3, "latest_attempt": {"id": "setatt_4", "object": "setup_attempt"}},
        ]});
        let mut c = Converter::new(ds);
        let summary = c.push_page(page.to_string().as_bytes(), ctx()).unwrap();
        let ids: Vec<(&str, &[usize])> = summary
            .truncated
            .iter()
            .map(|t| (t.id.as_str(), t.tables.as_slice()))
            .collect();
        assert_eq!(
            ids,
            [("seti_1", &[attempts][..]), ("seti_4", &[attempts][..])]
        );
        assert_eq!(c.tables[attempts].rows, 0);
        // An object read on its own comes with the complete list under the table's source key.
        let key = &ds.tables[attempts].source[0];
        let mut obj = json!({"id": "seti_3", "created": 6});
        obj[key] = json!({"object": "list", "has_more": false, "data": [
            {"id": "setatt_1", "object": "setup_attempt", "setup_intent": "seti_3", "status": "succeeded"},
        ]});
        c.push(&obj, ctx());
        assert_eq!(c.tables[attempts].rows, 1);
    }

    #[test]
    fn truncated_nested_lists_are_left_for_completion() {
        let ds = Catalog::get().dataset("invoices").unwrap();
        let page = json!({"object": "list", "has_more": false, "data": [
            {"id": "in_1", "created": 5, "lines": {"object": "list", "data": [{"id": "il_1"}], "has_more": true}},
            {"id": "in_2", "created": 4, "lines": {"object": "list", "data": [{"id": "il_2"}], "has_more": false}},
        ]});
        let mut c = Converter::new(ds);
        let summary = c.push_page(page.to_string().as_bytes(), ctx()).unwrap();
        let lines = ds
            .tables
            .iter()
            .position(|t| t.name == "invoice_line_items")
            .unwrap();
        assert_eq!(
            summary.truncated,
            vec![Truncated {
                id: "in_1".into(),
                tables: vec![lines]
            }]
        );
        assert_eq!(summary.last, Some(("in_2".to_string(), Some(4))));
        // Both invoices are in; of the lines, only the complete list's.
        assert_eq!(c.tables[0].rows, 2);
        assert_eq!(c.tables[lines].rows, 1);
        let items = [json!({"id": "il_1"}), json!({"id": "il_3"})];
        c.push_items(lines, "in_1", &items, ctx());
        let batch = c.tables[lines].take().unwrap().unwrap();
        let parents = batch.column(0).as_string::<i32>();
        let got: Vec<&str> = (0..batch.num_rows()).map(|r| parents.value(r)).collect();
        assert_eq!(got, ["in_2", "in_1", "in_1"]);
        assert!(c.push_page(b"{\"error\": {}}", ctx()).is_err());
        assert!(c.push_page(b"{\"data\": [", ctx()).is_err());
    }

    /// Text that is not a list page is an error naming what is wrong, never a partial success.
    #[test]
    fn malformed_pages_are_errors() {
        let ds = Catalog::get().dataset("customers").unwrap();
        let cases: [(&[u8], &str); 5] = [
            (b"{\"data\": [}", "expected value"),
            (
                b"{\"data\": [], \"x\": \"\xff\"}",
                "invalid UTF-8 at byte 19",
            ),
            (b"{\"data\": []} x", "trailing characters"),
            (b"[{\"id\": \"cus_1\"}]", "invalid type"),
            (b"{\"object\": \"list\"}", "not a list (no `data`)"),
        ];
        for (page, why) in cases {
            let e = Converter::new(ds).push_page(page, ctx()).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    /// Columns are filled only where an object has a value and padded with nulls in bulk: values must
    /// still land in their object's row, whatever the pattern of gaps, repeats and mismatches.
    #[test]
    fn sparse_and_repeated_fields_land_in_their_rows() {
        use arrow::datatypes::Int64Type;
        let ds = Catalog::get().dataset("customers").unwrap();
        let page = br#"{"data": [
            {"id": "cus_1", "balance": 1, "metadata": {"k": "a"}},
            {"id": "cus_2"},
            {"id": "cus_3", "balance": 3, "balance": null, "description": "d3"},
            {"id": "cus_4", "balance": null, "balance": 4, "metadata": {"k": null, "j": "b"}},
            {"id": "cus_5", "balance": "x", "description": "d5"},
            {"id": "cus_6"}
        ], "has_more": false}"#;
        let mut c = Converter::new(ds);
        c.push_page(page, ctx()).unwrap();
        assert_eq!(c.mismatches, 1, "the string balance");
        let main = c.tables[0].take().unwrap().unwrap();
        assert_eq!(main.num_rows(), 6);
        let col = |n: &str| main.column(main.schema().index_of(n).unwrap()).clone();
        let balance = col("balance");
        let balance = balance.as_primitive::<Int64Type>();
        let got: Vec<Option<i64>> = (0..6)
            .map(|r| balance.is_valid(r).then(|| balance.value(r)))
            .collect();
        assert_eq!(got, [Some(1), None, None, Some(4), None, None]);
        let description = col("description");
        let description = description.as_string::<i32>();
        let got: Vec<Option<&str>> = (0..6)
            .map(|r| description.is_valid(r).then(|| description.value(r)))
            .collect();
        assert_eq!(got, [None, None, Some("d3"), None, Some("d5"), None]);
        let meta = take(&mut c, "customers_metadata");
        let values = meta.column(2).as_string::<i32>().clone();
        let got: Vec<Option<&str>> = (0..3)
            .map(|r| values.is_valid(r).then(|| values.value(r)))
            .collect();
        assert_eq!(got, [Some("a"), None, Some("b")]);
        assert_eq!(meta.num_rows(), 3);
    }

    #[test]
    fn metadata_rows_and_mismatched_values() {
        let ds = Catalog::get().dataset("customers").unwrap();
        let mut c = Converter::new(ds);
        c.push(&json!({"id": "cus_1", "balance": "not a number", "metadata": {"a": "1", "région": "Île"}}), ctx());
        assert_eq!(c.mismatches, 1);
        let main = c.tables[0].take().unwrap().unwrap();
        let bal = main.column(main.schema().index_of("balance").unwrap());
        assert!(bal.is_null(0));
        let meta = take(&mut c, "customers_metadata");
        assert_eq!(meta.num_rows(), 2);
        assert_eq!(meta.schema().field(0).name(), "customer_id");
    }

    /// Arbitrary JSON: every kind of value, nested up to `depth`, strings with escapes and non-ASCII.
    fn any(rng: &mut fastrand::Rng, depth: u32) -> Value {
        const CHARS: &[char] = &[
            'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u{1}', 'é', '€', '😀', ',', '{',
        ];
        let string = |rng: &mut fastrand::Rng| -> String {
            (0..rng.usize(0..8))
                .map(|_| CHARS[rng.usize(..CHARS.len())])
                .collect()
        };
        match rng.u8(0..if depth == 0 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => Value::from(rng.i64(..) >> rng.u32(0..64)),
            3 => Value::from(rng.u64(..)),
            4 => Value::from((rng.f64() - 0.5) * 10f64.powi(rng.i32(-3..20))),
            5 => Value::String(string(rng)),
            6 => Value::Array((0..rng.usize(0..4)).map(|_| any(rng, depth - 1)).collect()),
            _ => Value::Object(
                (0..rng.usize(0..4))
                    .map(|_| (string(rng), any(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    /// A value for `col`: mostly one of its type (an expanded object for a reference, a list for a
    /// joined column), sometimes anything at all.
    fn value_for(rng: &mut fastrand::Rng, col: &crate::catalog::Column) -> Value {
        if rng.u8(0..4) == 0 {
            return any(rng, 2);
        }
        match col.kind {
            ColumnType::String if col.reference && rng.bool() => {
                json!({"id": any(rng, 0), "object": "thing", "x": any(rng, 1)})
            }
            ColumnType::String if col.join => {
                Value::Array((0..rng.usize(0..4)).map(|_| any(rng, 0)).collect())
            }
            ColumnType::String => Value::String(format!("s{}", rng.u32(..))),
            ColumnType::Int64 | ColumnType::Timestamp => Value::from(rng.i64(-1 << 40..1 << 40)),
            ColumnType::Float64 => Value::from(rng.f64() * 1e4),
            ColumnType::Bool => Value::Bool(rng.bool()),
            ColumnType::Json => any(rng, 3),
        }
    }

    /// Sets `value` at `path` in `obj`, making the objects on the way; a value already on the way
    /// that is not an object stays (the expectation is read from the finished object anyway).
    fn set_path(obj: &mut Value, path: &[String], value: Value) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let Value::Object(map) = obj else {
            return;
        };
        if rest.is_empty() {
            map.insert(first.clone(), value);
        } else {
            let next = map.entry(first.clone()).or_insert_with(|| json!({}));
            set_path(next, rest, value);
        }
    }

    /// An object of `ds` with random values at the catalog's paths, random metadata and child lists
    /// (arrays, or list objects that are complete or cut off), and unknown fields.
    fn random_object(rng: &mut fastrand::Rng, ds: &Dataset, n: usize) -> Value {
        let mut obj = json!({});
        for _ in 0..rng.usize(0..3) {
            let key = format!("zz_{}", rng.u8(..));
            set_path(&mut obj, &[key], any(rng, 3));
        }
        for table in &ds.tables {
            match table.kind {
                TableKind::Main => {
                    for col in &table.columns {
                        if rng.u8(0..4) > 0 {
                            set_path(&mut obj, &col.path, value_for(rng, col));
                        }
                    }
                }
                TableKind::Metadata => {
                    let map: serde_json::Map<String, Value> = (0..rng.usize(0..4))
                        .map(|i| {
                            let v = if rng.bool() {
                                Value::String(format!("v{i}"))
                            } else {
                                any(rng, 1)
                            };
                            (format!("k{i}"), v)
                        })
                        .collect();
                    set_path(&mut obj, &table.source, Value::Object(map));
                }
                TableKind::Child => {
                    let items: Vec<Value> = (0..rng.usize(0..3))
                        .map(|_| {
                            let mut item = json!({"zz": any(rng, 2)});
                            for col in &table.columns {
                                if rng.u8(0..4) > 0 {
                                    set_path(&mut item, &col.path, value_for(rng, col));
                                }
                            }
                            item
                        })
                        .collect();
                    let list = match rng.u8(0..5) {
                        0 => json!({"object": "list", "data": items, "has_more": true}),
                        1 | 2 => json!({"object": "list", "has_more": false, "data": items}),
                        _ => Value::Array(items),
                    };
                    set_path(&mut obj, &table.source, list);
                }
            }
        }
        // Set last, so no other column's path overwrites it: the parent of every child row.
        set_path(
            &mut obj,
            &["id".to_string()],
            Value::String(format!("obj_{n}")),
        );
        obj
    }

    fn lookup<'v>(obj: &'v Value, path: &[String]) -> &'v Value {
        path.iter()
            .try_fold(obj, |v, k| v.get(k.as_str()))
            .unwrap_or(&Value::Null)
    }

    /// The converter against `serde_json::Value` lookups, on random objects of every dataset,
    /// compact and pretty-printed: every column of every row of every table.
    #[test]
    fn random_objects_convert_like_value_lookups() {
        let mut checked = 0;
        for seed in 0..24u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            for ds in &Catalog::get().datasets {
                let objects: Vec<Value> = (0..rng.usize(1..6))
                    .map(|n| random_object(&mut rng, ds, n))
                    .collect();
                let page = json!({"has_more": false, "data": objects});
                let text = if rng.bool() {
                    serde_json::to_vec_pretty(&page)
                } else {
                    serde_json::to_vec(&page)
                }
                .unwrap();
                let mut c = Converter::new(ds);
                let summary = c.push_page(&text, ctx()).unwrap();
                assert_eq!(summary.objects, objects.len());
                for (t, table) in ds.tables.iter().enumerate() {
                    // The rows this table should have: (parent, the value each column reads from).
                    let mut want: Vec<(Option<&str>, Vec<Value>)> = Vec::new();
                    for obj in &objects {
                        let id = obj["id"].as_str();
                        match table.kind {
                            TableKind::Main => want.push((
                                None,
                                table
                                    .columns
                                    .iter()
                                    .map(|c| expected(c, lookup(obj, &c.path)))
                                    .collect(),
                            )),
                            TableKind::Metadata => {
                                if let Some(map) = lookup(obj, &table.source).as_object() {
                                    for (k, v) in map {
                                        want.push((
                                            id,
                                            vec![
                                                Value::from(k.as_str()),
                                                as_text(v).map_or(Value::Null, Value::from),
                                            ],
                                        ));
                                    }
                                }
                            }
                            TableKind::Child => {
                                let list = lookup(obj, &table.source);
                                // A cut-off list is left for paging where it can be paged; else
                                // it is converted as far as it goes.
                                let hinted = table.fetched_for(obj);
                                if table.fetch && !table.expand && hinted
                                    || list["has_more"] == Value::Bool(true)
                                        && table.nested_list_path.is_some()
                                {
                                    assert!(summary
                                        .truncated
                                        .iter()
                                        .any(|tr| Some(tr.id.as_str()) == id
                                            && tr.tables.contains(&t)));
                                    continue;
                                }
                                let items = list.get("data").unwrap_or(list);
                                for item in items.as_array().into_iter().flatten() {
                                    want.push((
                                        id,
                                        table
                                            .columns
                                            .iter()
                                            .map(|c| expected(c, lookup(item, &c.path)))
                                            .collect(),
                                    ));
                                }
                            }
                        }
                    }
                    let batch = c.tables[t].take().unwrap();
                    let rows = batch.as_ref().map_or(0, |b| b.num_rows());
                    assert_eq!(rows, want.len(), "seed {seed}: rows of {}", table.name);
                    let Some(batch) = batch else { continue };
                    let offset = usize::from(table.kind != TableKind::Main);
                    for (row, (parent, values)) in want.iter().enumerate() {
                        if let Some(parent) = parent {
                            assert_eq!(batch.column(0).as_string::<i32>().value(row), *parent);
                        }
                        let cells: Vec<Value> = match table.kind {
                            TableKind::Metadata => (1..3)
                                .map(|i| {
                                    let a = batch.column(i).as_string::<i32>();
                                    if a.is_null(row) {
                                        Value::Null
                                    } else {
                                        Value::from(a.value(row))
                                    }
                                })
                                .collect(),
                            _ => table
                                .columns
                                .iter()
                                .enumerate()
                                .map(|(i, c)| actual(c, batch.column(i + offset), row))
                                .collect(),
                        };
                        assert_eq!(&cells, values, "seed {seed}: {} row {row}", table.name);
                        checked += values.len();
                    }
                }
            }
        }
        assert!(checked > 20_000, "{checked} values checked");
    }
}
