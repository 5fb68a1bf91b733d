//! A catalog-directed walk over one object's JSON: values are taken straight from the parser into cells
//! of the rows being built, and every field the catalog does not map is skipped without being
//! materialised. This is what makes conversion cheap: no JSON tree is built for a page.
//!
//! The same walk runs over a parsed [`serde_json::Value`] (events, objects whose nested lists had to be
//! completed), because `&Value` is itself a serde deserializer: there is one conversion, not two.

use crate::catalog::{Column, ColumnType, Table, TableKind};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// One value on its way into a column, as the parser saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'de> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'de, str>),
    /// An object or list where the column wanted a scalar.
    Bad,
}

impl Cell<'_> {
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Cell::I64(i) => Some(i),
            Cell::U64(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }
}

/// What a field of an object feeds.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// A column of the row being built (index into the table's catalog columns).
    Column(usize),
    /// A metadata map: rows of table `usize` of the dataset.
    Metadata(usize),
    /// An array or nested list: rows of child table `usize`.
    Children(usize),
}

#[derive(Debug, Default)]
struct Step {
    roles: Vec<Role>,
    /// Deeper fields (flattened columns such as `outcome_type`).
    inner: Option<Node>,
}

impl Step {
    fn uses(&self) -> usize {
        self.roles.len() + usize::from(self.inner.is_some())
    }
}

/// The fields of one JSON object level that lead to something.
#[derive(Debug, Default)]
pub struct Node {
    steps: HashMap<Box<str>, Step>,
}

impl Node {
    fn step_at(&mut self, path: &[String]) -> &mut Step {
        let (first, rest) = path.split_first().expect("catalog paths are never empty");
        let step = self.steps.entry(first.as_str().into()).or_default();
        if rest.is_empty() {
            step
        } else {
            step.inner.get_or_insert_with(Node::default).step_at(rest)
        }
    }

    fn add_columns(&mut self, columns: &[Column]) {
        for (i, c) in columns.iter().enumerate() {
            self.step_at(&c.path).roles.push(Role::Column(i));
        }
    }
}

/// The compiled walk of a dataset: the main object's fields and each child table's item fields.
#[derive(Debug)]
pub struct Plan {
    root: Node,
    /// Per table of the dataset: the walk of one item (child tables only).
    items: Vec<Option<Node>>,
    /// Main-table columns holding `id` and `created`.
    id_col: Option<usize>,
    created_col: Option<usize>,
    main_columns: Vec<Column>,
    child_columns: Vec<Vec<Column>>,
}

impl Plan {
    pub fn new(tables: &[Table]) -> Plan {
        let mut root = Node::default();
        let mut items = Vec::new();
        let mut main_columns = Vec::new();
        let mut child_columns = Vec::new();
        for (t, table) in tables.iter().enumerate() {
            match table.kind {
                TableKind::Main => {
                    root.add_columns(&table.columns);
                    main_columns = table.columns.clone();
                    items.push(None);
                }
                TableKind::Metadata => {
                    root.step_at(&table.source).roles.push(Role::Metadata(t));
                    items.push(None);
                }
                TableKind::Child => {
                    root.step_at(&table.source).roles.push(Role::Children(t));
                    let mut item = Node::default();
                    item.add_columns(&table.columns);
                    items.push(Some(item));
                }
            }
            child_columns.push(table.columns.clone());
        }
        let find = |name: &str| main_columns.iter().position(|c| c.name == name);
        Plan {
            id_col: find("id"),
            // Invoice items carry their creation time as `date`; their list's `created` filter
            // applies to it, so it is the position of a segment's cursor like `created` elsewhere.
            created_col: find("created").or_else(|| find("date")),
            root,
            items,
            main_columns,
            child_columns,
        }
    }

    pub fn main_columns(&self) -> &[Column] {
        &self.main_columns
    }

    pub fn columns_of(&self, table: usize) -> &[Column] {
        &self.child_columns[table]
    }
}

/// The rows one object produces, collected before any is appended (an object is all or nothing).
#[derive(Debug, Default)]
pub struct ObjectRows<'de> {
    pub main: Vec<Cell<'de>>,
    /// `(table, key, value)`.
    pub metadata: Vec<(usize, Cow<'de, str>, Option<Cow<'de, str>>)>,
    /// `(table, cells)`.
    pub children: Vec<(usize, Vec<Cell<'de>>)>,
    /// A nested list was cut off (`has_more`): the object must be completed before conversion.
    pub truncated: bool,
}

impl<'de> ObjectRows<'de> {
    pub fn id(&self, plan: &Plan) -> Option<&str> {
        match plan.id_col.and_then(|i| self.main.get(i)) {
            Some(Cell::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn created(&self, plan: &Plan) -> Option<i64> {
        plan.created_col
            .and_then(|i| self.main.get(i))
            .and_then(Cell::as_i64)
    }
}

/// Where the columns of the object level being walked go.
#[derive(Clone, Copy)]
enum Target {
    Main,
    /// The last row of `children`.
    Child,
}

/// Walks one object (a map) into `rows`.
pub struct ObjectSeed<'p, 'r, 'de> {
    pub plan: &'p Plan,
    pub rows: &'r mut ObjectRows<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // The buffers are reused from object to object (a page's objects share one set).
        let n = self.plan.main_columns.len();
        self.rows.main.clear();
        self.rows.main.resize(n, Cell::Null);
        self.rows.metadata.clear();
        self.rows.children.clear();
        self.rows.truncated = false;
        d.deserialize_any(LevelVisitor {
            plan: self.plan,
            node: &self.plan.root,
            rows: self.rows,
            target: Target::Main,
        })
    }
}

/// Walks one level of an object.
struct LevelVisitor<'p, 'r, 'de> {
    plan: &'p Plan,
    node: &'p Node,
    rows: &'r mut ObjectRows<'de>,
    target: Target,
}

impl<'p, 'de> LevelVisitor<'p, '_, 'de> {
    fn column_slot(&mut self, i: usize) -> Option<&mut Cell<'de>> {
        match self.target {
            Target::Main => self.rows.main.get_mut(i),
            Target::Child => self
                .rows
                .children
                .last_mut()
                .and_then(|(_, c)| c.get_mut(i)),
        }
    }

    fn column(&self, i: usize) -> Option<&'p Column> {
        let plan: &'p Plan = self.plan;
        match self.target {
            Target::Main => plan.main_columns.get(i),
            Target::Child => {
                let table = self.rows.children.last().map(|(t, _)| *t)?;
                plan.child_columns.get(table)?.get(i)
            }
        }
    }

    /// Feeds one field value to one role.
    fn feed<D: Deserializer<'de>>(&mut self, role: Role, d: D) -> Result<(), D::Error> {
        match role {
            Role::Column(i) => {
                let Some(col) = self.column(i) else {
                    return IgnoredAny::deserialize(d).map(|_| ());
                };
                let cell = CellSeed { col }.deserialize(d)?;
                if let Some(slot) = self.column_slot(i) {
                    *slot = cell;
                }
                Ok(())
            }
            Role::Metadata(t) => d.deserialize_any(MetadataVisitor {
                table: t,
                rows: self.rows,
            }),
            Role::Children(t) => d.deserialize_any(ChildrenVisitor {
                plan: self.plan,
                table: t,
                rows: self.rows,
            }),
        }
    }

    fn feed_inner<D: Deserializer<'de>>(&mut self, node: &'p Node, d: D) -> Result<(), D::Error> {
        d.deserialize_any(LevelVisitor {
            plan: self.plan,
            node,
            rows: self.rows,
            target: self.target,
        })
    }
}

impl<'de> Visitor<'de> for LevelVisitor<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let Some(step) = self.node.steps.get(key.as_ref()) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if step.uses() == 1 {
                match (step.roles.first(), &step.inner) {
                    (Some(&role), _) => map.next_value_seed(RoleSeed {
                        level: &mut self,
                        role,
                    })?,
                    (None, Some(inner)) => map.next_value_seed(InnerSeed {
                        level: &mut self,
                        node: inner,
                    })?,
                    (None, None) => map.next_value::<IgnoredAny>().map(|_| ())?,
                }
            } else {
                // A field with several uses (say a column and a deeper path): parse it once and walk
                // a copy per use (rare, so the copies cost nothing that matters).
                let value: Value = map.next_value()?;
                for &role in &step.roles {
                    self.feed(role, value.clone()).map_err(de::Error::custom)?;
                }
                if let Some(inner) = &step.inner {
                    self.feed_inner(inner, value).map_err(de::Error::custom)?;
                }
            }
        }
        Ok(())
    }

    // `null` (or any non-object) where an object was expected: its columns stay null.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

struct RoleSeed<'v, 'p, 'r, 'de> {
    level: &'v mut LevelVisitor<'p, 'r, 'de>,
    role: Role,
}

impl<'de> DeserializeSeed<'de> for RoleSeed<'_, '_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.level.feed(self.role, d)
    }
}

struct InnerSeed<'v, 'p, 'r, 'de> {
    level: &'v mut LevelVisitor<'p, 'r, 'de>,
    node: &'p Node,
}

impl<'de> DeserializeSeed<'de> for InnerSeed<'_, '_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.level.feed_inner(self.node, d)
    }
}

/// A string, borrowed from the input when it has no escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(StrSeed)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Any JSON value as text: strings as they are, numbers and booleans printed, objects and lists as
/// compact JSON; `null` is `None`.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TextSeed)
    }
}

impl<'de> Visitor<'de> for TextSeed {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(Value::from(v).to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TextSeed)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        JsonText { out: &mut out }.visit_map(map)?;
        Ok(String::from_utf8(out).ok().map(Cow::Owned))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        JsonText { out: &mut out }.visit_seq(seq)?;
        Ok(String::from_utf8(out).ok().map(Cow::Owned))
    }
}

/// One column's value.
struct CellSeed<'c> {
    col: &'c Column,
}

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        if self.col.kind == ColumnType::Json {
            let mut out = Vec::new();
            d.deserialize_any(JsonText { out: &mut out })?;
            return Ok(match String::from_utf8(out) {
                Ok(text) if text != "null" => Cell::Str(Cow::Owned(text)),
                Ok(_) => Cell::Null,
                Err(_) => Cell::Bad,
            });
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value for column {}", self.col.name)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(Cell::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        d.deserialize_any(self)
    }
    /// An expanded reference: its `id`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        let mut cell = Cell::Bad;
        while let Some(key) = map.next_key_seed(StrSeed)? {
            if self.col.reference && key == "id" {
                cell = match map.next_value_seed(TextSeed)? {
                    Some(id) => Cell::Str(id),
                    None => Cell::Bad,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(cell)
    }
    /// A list of scalars: joined with commas.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        if !self.col.join {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Cell::Bad);
        }
        let mut joined = String::new();
        let mut first = true;
        while let Some(item) = seq.next_element_seed(TextSeed)? {
            if !first {
                joined.push(',');
            }
            first = false;
            joined.push_str(item.as_deref().unwrap_or("null"));
        }
        Ok(Cell::Str(Cow::Owned(joined)))
    }
}

/// A metadata map into `(table, key, value)` rows.
struct MetadataVisitor<'r, 'de> {
    table: usize,
    rows: &'r mut ObjectRows<'de>,
}

impl<'de> Visitor<'de> for MetadataVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metadata object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let value = map.next_value_seed(TextSeed)?;
            self.rows.metadata.push((self.table, key, value));
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// An array of items, or a list object (`{"data": [...], "has_more": …}`), into child rows.
struct ChildrenVisitor<'p, 'r, 'de> {
    plan: &'p Plan,
    table: usize,
    rows: &'r mut ObjectRows<'de>,
}

impl<'de> Visitor<'de> for ChildrenVisitor<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(node) = self.plan.items[self.table].as_ref() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let width = self.plan.child_columns[self.table].len();
        loop {
            self.rows
                .children
                .push((self.table, vec![Cell::Null; width]));
            let item = seq.next_element_seed(ItemSeed {
                plan: self.plan,
                node,
                rows: &mut *self.rows,
            })?;
            if item.is_none() {
                self.rows.children.pop();
                return Ok(());
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed)? {
            match key.as_ref() {
                "data" => map.next_value_seed(ChildrenSeed {
                    plan: self.plan,
                    table: self.table,
                    rows: &mut *self.rows,
                })?,
                "has_more" => {
                    if map.next_value::<Option<bool>>()? == Some(true) {
                        self.rows.truncated = true;
                    }
                }
                _ => map.next_value::<IgnoredAny>().map(|_| ())?,
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

struct ChildrenSeed<'p, 'r, 'de> {
    plan: &'p Plan,
    table: usize,
    rows: &'r mut ObjectRows<'de>,
}

impl<'de> DeserializeSeed<'de> for ChildrenSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ChildrenVisitor {
            plan: self.plan,
            table: self.table,
            rows: self.rows,
        })
    }
}

/// One item of a child list: a row whose cells are the last entry of `rows.children`.
struct ItemSeed<'p, 'r, 'de> {
    plan: &'p Plan,
    node: &'p Node,
    rows: &'r mut ObjectRows<'de>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(LevelVisitor {
            plan: self.plan,
            node: self.node,
            rows: self.rows,
            target: Target::Child,
        })
    }
}

/// Any JSON value written out as compact JSON text while it is read (no tree is built): what a JSON
/// column stores. Keys keep the order they arrive in.
struct JsonText<'o> {
    out: &'o mut Vec<u8>,
}

impl JsonText<'_> {
    fn scalar<T: serde::Serialize + ?Sized, E: de::Error>(self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, v).map_err(E::custom)
    }
}

impl<'de> DeserializeSeed<'de> for JsonText<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonText<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(&v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(&v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(&v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(&Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push(b'{');
        let mut first = true;
        while let Some(key) = map.next_key_seed(StrSeed)? {
            if !first {
                self.out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *self.out, key.as_ref()).map_err(de::Error::custom)?;
            self.out.push(b':');
            map.next_value_seed(JsonText {
                out: &mut *self.out,
            })?;
        }
        self.out.push(b'}');
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        loop {
            if !first {
                self.out.push(b',');
            }
            let len = self.out.len();
            if seq
                .next_element_seed(JsonText {
                    out: &mut *self.out,
                })?
                .is_none()
            {
                // Nothing was written for the missing element: drop the separator (if any).
                self.out.truncate(len - usize::from(!first));
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(json: &str) -> String {
        let mut out = Vec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        JsonText { out: &mut out }.deserialize(&mut de).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_text_is_compact_and_equal_to_the_input() {
        let input =
            "{ \"b\" : [1, 2.5, \"x \\\" y\", null, {\"é\": true}],\n \"a\": {} , \"c\": [] }";
        let out = text_of(input);
        assert_eq!(
            out,
            r#"{"b":[1,2.5,"x \" y",null,{"é":true}],"a":{},"c":[]}"#
        );
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            serde_json::from_str::<Value>(input).unwrap()
        );
        // From a parsed value (events, completed objects): the same JSON.
        let v: Value = serde_json::from_str(input).unwrap();
        let mut out2 = Vec::new();
        JsonText { out: &mut out2 }.deserialize(&v).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&out2).unwrap(), v);
    }
}
