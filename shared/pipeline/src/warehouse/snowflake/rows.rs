//! A result's rows as text, from either format Snowflake answers in: JSON (`rowset`, every value a
//! string in Snowflake's wire form) or Arrow (`rowsetBase64`, an IPC stream in Snowflake's layout).
//! Both give the same text for the same value: integers and decimals as written, booleans `true` /
//! `false`, dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS[.fraction]` in UTC, JSON as JSON.

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, StructArray,
};
use arrow::datatypes::DataType;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// A result column as Snowflake describes it (`rowtype`).
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// `fixed`, `real`, `text`, `boolean`, `date`, `time`, `timestamp_ntz`, `timestamp_ltz`,
    /// `timestamp_tz`, `variant`, `object`, `array`, `binary`, …
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub scale: Option<i64>,
}

impl Column {
    fn scale(&self) -> u32 {
        self.scale.unwrap_or(0).clamp(0, 38) as u32
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// Rows of a JSON result.
pub fn from_json(rowset: &Value, columns: &[Column]) -> Result<Rows, String> {
    let Some(rows) = rowset.as_array() else {
        return Ok(Vec::new());
    };
    rows.iter()
        .map(|row| {
            let cells = row.as_array().ok_or("a row that is not a list")?;
            cells
                .iter()
                .zip(columns)
                .map(|(cell, column)| match cell {
                    Value::Null => Ok(None),
                    Value::String(s) => json_text(s, column).map(Some),
                    other => Ok(Some(other.to_string())),
                })
                .collect()
        })
        .collect()
}

/// One JSON value: dates come as days since 1970, times and timestamps as seconds with a fraction
/// (`timestamp_tz` followed by its offset, which UTC text drops).
fn json_text(s: &str, column: &Column) -> Result<String, String> {
    let bad = || format!("column {}: unreadable {} value", column.name, column.kind);
    Ok(match column.kind.as_str() {
        "boolean" => matches!(s, "1" | "true" | "TRUE" | "True").to_string(),
        "date" => date_text(s.parse().map_err(|_| bad())?),
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => {
            let seconds = s.split(' ').next().unwrap_or(s);
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let epoch: i64 = whole.parse().map_err(|_| bad())?;
            let nanos = if fraction.is_empty() {
                0
            } else {
                let digits = &fraction[..fraction.len().min(9)];
                let value: i64 = digits.parse().map_err(|_| bad())?;
                value * 10i64.pow(9 - digits.len() as u32)
            };
            // `-1.25` is 1.25 s before 1970: the second before, and 0.75 s after it.
            if whole.starts_with('-') && nanos > 0 {
                timestamp_text(epoch - 1, (1_000_000_000 - nanos) as u32)
            } else {
                timestamp_text(epoch, nanos as u32)
            }
        }
        _ => s.to_string(),
    })
}

/// Rows of an Arrow result (an IPC stream, base64). An empty string is an empty result.
pub fn from_arrow(base64: &str, columns: &[Column]) -> Result<Rows, String> {
    if base64.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = STANDARD
        .decode(base64)
        .map_err(|e| format!("the Arrow result is not base64 ({e})"))?;
    from_arrow_stream(bytes, columns)
}

/// Rows of a result chunk: an Arrow IPC stream, or JSON rows without their enclosing brackets
/// (`["a","1"],["b","2"]`, how Snowflake writes a JSON chunk).
pub fn from_chunk(bytes: Vec<u8>, json: bool, columns: &[Column]) -> Result<Rows, String> {
    if !json {
        return from_arrow_stream(bytes, columns);
    }
    let mut text = Vec::with_capacity(bytes.len() + 2);
    text.push(b'[');
    text.extend(bytes);
    text.push(b']');
    let rowset: Value = serde_json::from_slice(&text)
        .map_err(|e| format!("a JSON result chunk is unreadable ({e})"))?;
    from_json(&rowset, columns)
}

fn from_arrow_stream(bytes: Vec<u8>, columns: &[Column]) -> Result<Rows, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("the Arrow result is unreadable ({e})"))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("the Arrow result is unreadable ({e})"))?;
        let texts: Vec<Vec<Option<String>>> = batch
            .columns()
            .iter()
            .zip(columns)
            .map(|(array, column)| arrow_texts(array.as_ref(), column))
            .collect::<Result<_, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(texts.iter().map(|t| t[i].clone()).collect());
        }
    }
    Ok(rows)
}

/// One column of an Arrow batch as text.
fn arrow_texts(array: &dyn Array, column: &Column) -> Result<Vec<Option<String>>, String> {
    let scale = column.scale();
    let each = |f: &dyn Fn(usize) -> String| -> Vec<Option<String>> {
        (0..array.len())
            .map(|i| (!array.is_null(i)).then(|| f(i)))
            .collect()
    };
    let scaled = |v: i128| decimal_text(v, scale);
    Ok(match (column.kind.as_str(), array.data_type()) {
        ("fixed", t) if t.is_integer() => {
            let wide = arrow::compute::cast(array, &DataType::Int64)
                .map_err(|e| format!("column {}: {e}", column.name))?;
            let a: &Int64Array = wide.as_primitive();
            each(&|i| scaled(a.value(i).into()))
        }
        ("real", DataType::Float64) => {
            let a: &Float64Array = array.as_primitive();
            each(&|i| a.value(i).to_string())
        }
        ("boolean", DataType::Boolean) => {
            let a: &BooleanArray = array.as_boolean();
            each(&|i| a.value(i).to_string())
        }
        ("date", DataType::Date32) => {
            let a: &Date32Array = array.as_primitive();
            each(&|i| date_text(a.value(i).into()))
        }
        (kind, DataType::Struct(_)) if kind.starts_with("timestamp") => {
            let s: &StructArray = array.as_struct();
            let epoch = s
                .column_by_name("epoch")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>())
                .ok_or_else(|| format!("column {}: a timestamp without `epoch`", column.name))?;
            let fraction = s
                .column_by_name("fraction")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int32Type>());
            each(&|i| {
                let nanos = fraction.map_or(0, |f| f.value(i).max(0) as u32);
                timestamp_text(epoch.value(i), nanos)
            })
        }
        (kind, DataType::Int64) if kind.starts_with("timestamp") => {
            // Scaled units of seconds (Snowflake's layout for a scale of 7 or less).
            let a: &Int64Array = array.as_primitive();
            let unit = 10i64.pow(scale.min(9));
            each(&|i| {
                let v = a.value(i);
                let nanos = v.rem_euclid(unit) * 10i64.pow(9 - scale.min(9));
                timestamp_text(v.div_euclid(unit), nanos as u32)
            })
        }
        _ => {
            let text = arrow::compute::cast(array, &DataType::Utf8).map_err(|e| {
                format!(
                    "column {}: {} values as text ({e})",
                    column.name, column.kind
                )
            })?;
            let text = text.as_string::<i32>();
            each(&|i| text.value(i).to_string())
        }
    })
}

/// An integer of `scale` decimal places as text: `12345`, scale 2 → `123.45`.
fn decimal_text(v: i128, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let unit = 10i128.pow(scale);
    let sign = if v < 0 { "-" } else { "" };
    let (whole, frac) = (v.abs() / unit, v.abs() % unit);
    format!("{sign}{whole}.{frac:0width$}", width = scale as usize)
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
fn date_text(days: i64) -> String {
    timestamp_text(days * 86_400, 0)[..10].to_string()
}

/// Seconds since the epoch and nanoseconds as `YYYY-MM-DD HH:MM:SS`, with the fraction's significant
/// digits when it has any.
fn timestamp_text(epoch: i64, nanos: u32) -> String {
    let (days, rest) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let (y, m, d) = crate::warehouse::sql::civil_from_days(days);
    let whole = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if nanos == 0 {
        whole
    } else {
        let fraction = format!("{:09}", nanos.min(999_999_999));
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: &str, scale: i64) -> Column {
        Column {
            name: name.into(),
            kind: kind.into(),
            scale: Some(scale),
        }
    }

    #[test]
    fn json_values_read_as_the_same_text_as_arrow_ones() {
        let columns = [
            column("n", "fixed", 0),
            column("amount", "fixed", 2),
            column("paid", "boolean", 0),
            column("day", "date", 0),
            column("created", "timestamp_ntz", 9),
            column("data", "variant", 0),
        ];
        let rowset = serde_json::json!([
            [
                "42",
                "123.45",
                "1",
                "19700",
                "1700000000.250000000",
                "{\"a\":1}"
            ],
            [null, "-0.50", "0", "0", "1700000000.000000000", null]
        ]);
        let rows = from_json(&rowset, &columns).unwrap();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            rows[0],
            vec![
                s("42"),
                s("123.45"),
                s("true"),
                s("2023-12-09"),
                s("2023-11-14 22:13:20.25"),
                s("{\"a\":1}")
            ]
        );
        assert_eq!(
            rows[1],
            vec![
                None,
                s("-0.50"),
                s("false"),
                s("1970-01-01"),
                s("2023-11-14 22:13:20"),
                None
            ]
        );

        use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
        use arrow::datatypes::{Field, Fields, Schema};
        use std::sync::Arc;
        let ts_fields = Fields::from(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("fraction", DataType::Int32, false),
        ]);
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(42), None])),
            Arc::new(Int64Array::from(vec![12345, -50])),
            Arc::new(BooleanArray::from(vec![true, false])),
            Arc::new(Date32Array::from(vec![19700, 0])),
            Arc::new(StructArray::new(
                ts_fields.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![1_700_000_000, 1_700_000_000])) as ArrayRef,
                    Arc::new(Int32Array::from(vec![250_000_000, 0])),
                ],
                None,
            )),
            Arc::new(StringArray::from(vec![Some("{\"a\":1}"), None])),
        ];
        let schema = Schema::new(
            columns
                .iter()
                .zip(&arrays)
                .map(|(c, a)| Field::new(&c.name, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(Arc::new(schema), arrays).unwrap();
        let mut ipc = Vec::new();
        {
            let mut w =
                arrow_ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        let from_arrow = from_arrow(&STANDARD.encode(&ipc), &columns).unwrap();
        assert_eq!(from_arrow, rows);
    }

    #[test]
    fn scaled_integers_and_timestamps() {
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(-123_450, 2), "-1234.50");
        assert_eq!(timestamp_text(0, 1_000), "1970-01-01 00:00:00.000001");
        let ntz = column("t", "timestamp_ntz", 9);
        assert_eq!(
            json_text("-1.250000000", &ntz).unwrap(),
            "1969-12-31 23:59:58.75"
        );
        assert_eq!(json_text("-86400", &ntz).unwrap(), "1969-12-31 00:00:00");
        let c = column("t", "timestamp_ntz", 3);
        let a = Int64Array::from(vec![1_700_000_000_123]);
        assert_eq!(
            arrow_texts(&a, &c).unwrap(),
            vec![Some("2023-11-14 22:13:20.123".to_string())]
        );
        let narrow = arrow::array::Int16Array::from(vec![Some(-1234), None]);
        assert_eq!(
            arrow_texts(&narrow, &column("fee", "fixed", 2)).unwrap(),
            vec![Some("-12.34".to_string()), None]
        );
        assert!(from_arrow("", &[]).unwrap().is_empty());
        assert!(from_arrow("%%%", &[]).is_err());
    }
}
