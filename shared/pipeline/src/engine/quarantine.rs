//! Rows a warehouse cannot hold. Redshift's widest text column takes 65,535 bytes; a row with a longer
//! value (a huge JSON field) fails its whole load with "value too long", and since every retry loads
//! the same row, the dataset would be stuck for good. Such a row is kept out of the warehouse load
//! instead: the lake's table files keep every row as it is, a copy of the row goes to
//! `<mode>/_quarantine/<table>/…` for someone to look at, the warehouse loads a copy of the file
//! without it (`<mode>/_warehouse/<table>/…`), keeping the object's previous version, and the
//! operators are told which object and column ([`Quarantined`]).

use crate::catalog::Table;
use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// A table's rows parted by whether the warehouse can hold them.
pub(crate) struct Parted {
    /// The rows whose every text value fits.
    pub(crate) fits: Vec<RecordBatch>,
    /// The rows with a value that does not.
    pub(crate) quarantined: Vec<RecordBatch>,
    pub(crate) why: Vec<Quarantined>,
}

/// A row kept out of the warehouse: the object (its id, or for a child table its parent's), the
/// first column too long, and that value's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quarantined {
    pub(crate) table: String,
    pub(crate) object: String,
    pub(crate) column: String,
    pub(crate) bytes: usize,
}

impl std::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row of {}: column {} holds {} bytes",
            self.table, self.object, self.column, self.bytes
        )
    }
}

/// Parts `batches` of `table` by whether every text value is at most `limit` bytes; `None` when all
/// fit (the common case: one pass over the string offsets, nothing copied).
pub(crate) fn part(
    table: &Table,
    batches: &[RecordBatch],
    limit: usize,
) -> Result<Option<Parted>, ArrowError> {
    let mut parted = Parted {
        fits: Vec::new(),
        quarantined: Vec::new(),
        why: Vec::new(),
    };
    let key = table.parent_key.as_deref().unwrap_or("id");
    for batch in batches {
        let mut fits = vec![true; batch.num_rows()];
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if *field.data_type() != DataType::Utf8 {
                continue;
            }
            let strings = column.as_string::<i32>();
            for (row, fit) in fits.iter_mut().enumerate() {
                let bytes = strings.value_length(row) as usize;
                if *fit && strings.is_valid(row) && bytes > limit {
                    *fit = false;
                    parted.why.push(Quarantined {
                        table: table.name.clone(),
                        object: object_id(batch, key, row),
                        column: field.name().clone(),
                        bytes,
                    });
                }
            }
        }
        if fits.iter().all(|f| *f) {
            parted.fits.push(batch.clone());
            continue;
        }
        let keep = BooleanArray::from(fits);
        let out = arrow::compute::not(&keep)?;
        parted.fits.push(filter_record_batch(batch, &keep)?);
        parted.quarantined.push(filter_record_batch(batch, &out)?);
    }
    Ok((!parted.why.is_empty()).then_some(parted))
}

/// The object a row is of: its `key` column's value (`?` when the table has none).
fn object_id(batch: &RecordBatch, key: &str, row: usize) -> String {
    batch
        .column_by_name(key)
        .filter(|c| *c.data_type() == DataType::Utf8)
        .map(|c| c.as_string::<i32>().value(row).to_string())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::convert::{Converter, RowContext};

    #[test]
    fn a_row_with_a_value_over_the_limit_is_parted_from_the_others() {
        let customers = Catalog::get().dataset("customers").unwrap();
        let mut converter = Converter::new(customers);
        let ctx = RowContext {
            merchant_id: "acct_1",
            account: None,
            batch_timestamp: 1,
            deleted: false,
        };
        for (id, description) in [
            ("cus_a", "short"),
            ("cus_b", &"x".repeat(70_000)),
            ("cus_c", ""),
        ] {
            let object = serde_json::json!({"id": id, "object": "customer", "created": 1, "description": description});
            converter.push(&object, ctx);
        }
        let main = customers.main_table();
        let batch = converter
            .tables
            .iter_mut()
            .find(|t| t.table.name == main.name)
            .unwrap()
            .take()
            .unwrap()
            .unwrap();
        assert!(part(main, std::slice::from_ref(&batch), 100_000)
            .unwrap()
            .is_none());
        let parted = part(main, &[batch], 65_535).unwrap().unwrap();
        assert_eq!(
            parted.why,
            [Quarantined {
                table: "customers".into(),
                object: "cus_b".into(),
                column: "description".into(),
                bytes: 70_000
            }]
        );
        let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>();
        assert_eq!((rows(&parted.fits), rows(&parted.quarantined)), (2, 1));
    }
}
