//! A catalog-directed walk over one object's JSON text, driven by `serde_json`: each field the catalog
//! maps is read straight into a cell of the rows being built (strings borrowed from the page when they
//! hold no escapes), and every other field is skipped by the parser without being built
//! ([`IgnoredAny`]). No JSON tree is made for a page.
//!
//! The walk is a set of [`DeserializeSeed`]s, one per thing a value can feed: a column, a metadata map,
//! a child list, an object level. JSON columns and values read for several uses are taken as
//! [`RawValue`]s (borrowed text) and, for the second use, parsed again from that text alone.

use crate::catalog::{Column, ColumnType, Table, TableKind};
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
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
    /// Uses of the value: a value with more than one is read as text first, then once per use.
    fn uses(&self) -> usize {
        self.roles.len() + usize::from(self.inner.is_some())
    }
}

/// The field names of one object level that lead to something. `foldhash` rather than the standard
/// library's SipHash: the map is looked up for every key of every object, and field names are short.
type Fields = HashMap<Box<str>, Step, foldhash::fast::FixedState>;

/// The fields of one JSON object level that lead to something.
#[derive(Debug, Default)]
pub struct Node {
    steps: Fields,
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
    /// Main-table columns holding `id`, `created` and `object`.
    id_col: Option<usize>,
    created_col: Option<usize>,
    object_col: Option<usize>,
    main_columns: Vec<Column>,
    child_columns: Vec<Vec<Column>>,
    /// Per table: a cut-off list of it can be paged to its end (the table has a `nested_list_path`).
    /// Other cut-off lists are converted as far as they go.
    completable: Vec<bool>,
    /// Tables whose rows a list page never holds (`Table::fetch`): paged for every object of a page,
    /// or only where the main-table column of `Table::fetch_when` holds a value (the value
    /// `Table::fetch_when_equals`, where set).
    fetched: Vec<(usize, Option<usize>, Option<String>)>,
}

impl Plan {
    pub fn new(tables: &[Table]) -> Plan {
        let mut root = Node::default();
        let mut items = Vec::new();
        let mut main_columns = Vec::new();
        let mut child_columns = Vec::new();
        let mut completable = Vec::new();
        let mut fetched = Vec::new();
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
            completable.push(table.nested_list_path.is_some());
            if table.fetch && !table.expand && table.nested_list_path.is_some() {
                fetched.push((t, table));
            }
        }
        let find = |path: &str| {
            main_columns
                .iter()
                .position(|c| c.path.len() == 1 && c.path[0] == path)
        };
        let fetched = fetched
            .into_iter()
            .map(|(t, table)| {
                let hint = table.fetch_when.as_deref().and_then(find);
                (t, hint, table.fetch_when_equals.clone())
            })
            .collect();
        Plan {
            id_col: find("id"),
            // Invoice items carry their creation time as `date`; their list's `created` filter
            // applies to it, so it is the position of a segment's cursor like `created` elsewhere.
            created_col: find("created").or_else(|| find("date")),
            object_col: find("object"),
            root,
            items,
            main_columns,
            child_columns,
            completable,
            fetched,
        }
    }

    pub fn main_columns(&self) -> &[Column] {
        &self.main_columns
    }

    pub fn columns_of(&self, table: usize) -> &[Column] {
        &self.child_columns[table]
    }

    pub fn id_col(&self) -> Option<usize> {
        self.id_col
    }

    pub fn object_col(&self) -> Option<usize> {
        self.object_col
    }

    /// Tables whose lists no page holds and that `rows` (one object) has to be paged: all, but those
    /// whose `fetch_when` column is null or not the value asked for (`Table::fetched_for`).
    pub fn fetched<'a>(&'a self, rows: &'a ObjectRows<'_>) -> impl Iterator<Item = usize> + 'a {
        self.fetched
            .iter()
            .filter(|(_, hint, equals)| {
                hint.is_none_or(|i| match (rows.main.get(i), equals) {
                    (None | Some(Cell::Null), _) => false,
                    (Some(Cell::Str(s)), Some(equals)) => s == equals,
                    (Some(_), Some(_)) => false,
                    (Some(_), None) => true,
                })
            })
            .map(|(t, ..)| *t)
    }
}

/// The rows one object produces, collected before any is appended.
#[derive(Debug, Default)]
pub struct ObjectRows<'de> {
    /// One cell per main-table column; only those named in `set` can hold a value.
    pub main: Vec<Cell<'de>>,
    /// The main-table columns given a value, in the order they were met. Objects fill a fraction of
    /// a wide table's columns (a charge, one payment method's of dozens), so the rest are neither
    /// reset nor visited: they become nulls in bulk when the column next gets a value.
    pub set: Vec<usize>,
    /// `(table, key, value)`.
    pub metadata: Vec<(usize, Cow<'de, str>, Option<Cow<'de, str>>)>,
    /// `(table, cells)`.
    pub children: Vec<(usize, Vec<Cell<'de>>)>,
    /// Child tables whose nested list was cut off (`has_more`): their rows are not here, the whole
    /// list has to be paged from its own endpoint.
    pub truncated: Vec<usize>,
}

impl<'de> ObjectRows<'de> {
    pub fn id(&self, plan: &Plan) -> Option<&Cow<'de, str>> {
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

    /// Ready for the next object of `plan`: the buffers are kept, the cells that were set are cleared.
    fn reset(&mut self, plan: &Plan) {
        if self.main.len() == plan.main_columns.len() {
            for &i in &self.set {
                self.main[i] = Cell::Null;
            }
        } else {
            self.main.clear();
            self.main.resize(plan.main_columns.len(), Cell::Null);
        }
        self.set.clear();
        self.metadata.clear();
        self.children.clear();
        self.truncated.clear();
    }

    /// Sets main-table column `i` (a repeated field is overwritten, not listed twice).
    pub fn set_main(&mut self, i: usize, cell: Cell<'de>) {
        if let Some(slot) = self.main.get_mut(i) {
            if matches!(slot, Cell::Null) && !matches!(cell, Cell::Null) {
                self.set.push(i);
            }
            *slot = cell;
        }
    }
}

/// Walks the object `de` is at into `rows` (whose buffers are reused from object to object). A value
/// that is not an object leaves every column null.
pub fn object<'de, D: Deserializer<'de>>(
    plan: &Plan,
    de: D,
    rows: &mut ObjectRows<'de>,
) -> Result<(), D::Error> {
    rows.reset(plan);
    Level {
        walk: Walk { plan, rows },
        node: &plan.root,
        target: Target::Main,
    }
    .deserialize(de)
}

/// Walks one item of child table `table` (an object of a completed nested list) into a new row of
/// `rows.children`.
pub fn item<'de, D: Deserializer<'de>>(
    plan: &Plan,
    table: usize,
    de: D,
    rows: &mut ObjectRows<'de>,
) -> Result<(), D::Error> {
    Item {
        walk: Walk { plan, rows },
        table,
    }
    .deserialize(de)
}

/// Where the columns of the object level being walked go.
#[derive(Clone, Copy)]
enum Target {
    Main,
    /// The last row of `children`.
    Child,
}

struct Walk<'p, 'r, 'de> {
    plan: &'p Plan,
    rows: &'r mut ObjectRows<'de>,
}

impl<'p, 'de> Walk<'p, '_, 'de> {
    fn reborrow(&mut self) -> Walk<'p, '_, 'de> {
        Walk {
            plan: self.plan,
            rows: self.rows,
        }
    }

    fn column(&self, i: usize, target: Target) -> Option<&'p Column> {
        let plan: &'p Plan = self.plan;
        match target {
            Target::Main => plan.main_columns.get(i),
            Target::Child => {
                let table = self.rows.children.last().map(|(t, _)| *t)?;
                plan.child_columns.get(table)?.get(i)
            }
        }
    }

    /// One field's value, fed to its single use.
    fn feed<D: Deserializer<'de>>(
        &mut self,
        de: D,
        role: Role,
        target: Target,
    ) -> Result<(), D::Error> {
        match role {
            Role::Column(i) => {
                let Some(col) = self.column(i, target) else {
                    return IgnoredAny::deserialize(de).map(drop);
                };
                let cell = CellSeed(col).deserialize(de)?;
                match target {
                    Target::Main => self.rows.set_main(i, cell),
                    Target::Child => {
                        let row = self.rows.children.last_mut();
                        if let Some(slot) = row.and_then(|(_, c)| c.get_mut(i)) {
                            *slot = cell;
                        }
                    }
                }
                Ok(())
            }
            Role::Metadata(table) => de.deserialize_any(Metadata {
                walk: self.reborrow(),
                table,
            }),
            Role::Children(table) => de.deserialize_any(Children {
                walk: self.reborrow(),
                table,
            }),
        }
    }

    /// One field's value, fed to each of its uses: read once as text, parsed again per use.
    fn step<A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        step: &'p Step,
        target: Target,
    ) -> Result<(), A::Error> {
        if step.uses() == 1 {
            return map.next_value_seed(StepSeed {
                walk: self.reborrow(),
                step,
                target,
            });
        }
        let raw: &'de RawValue = map.next_value()?;
        let again = |walk: &mut Walk<'p, '_, 'de>, role: Option<Role>| {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            match role {
                Some(role) => walk.feed(&mut de, role, target),
                None => match &step.inner {
                    Some(inner) => Level {
                        walk: walk.reborrow(),
                        node: inner,
                        target,
                    }
                    .deserialize(&mut de),
                    None => Ok(()),
                },
            }
            .map_err(de::Error::custom)
        };
        for &role in &step.roles {
            again(self, Some(role))?;
        }
        if step.inner.is_some() {
            again(self, None)?;
        }
        Ok(())
    }
}

/// A field with one use.
struct StepSeed<'p, 'r, 'de> {
    walk: Walk<'p, 'r, 'de>,
    step: &'p Step,
    target: Target,
}

impl<'de> DeserializeSeed<'de> for StepSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(mut self, de: D) -> Result<(), D::Error> {
        match (self.step.roles.first(), &self.step.inner) {
            (Some(&role), _) => self.walk.feed(de, role, self.target),
            (None, Some(inner)) => Level {
                walk: self.walk,
                node: inner,
                target: self.target,
            }
            .deserialize(de),
            (None, None) => IgnoredAny::deserialize(de).map(drop),
        }
    }
}

/// Drains a list nobody asked for (serde_json insists a sequence is read to its end).
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Accepts any scalar and does nothing with it: for visitors that only care about maps or lists.
macro_rules! ignore_scalars {
    () => {
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
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// A seed that is its own visitor, for any kind of value.
macro_rules! seed_is_visitor {
    ($seed:ident) => {
        impl<'de> DeserializeSeed<'de> for $seed<'_, '_, 'de> {
            type Value = ();

            fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
                de.deserialize_any(self)
            }
        }
    };
}

/// One object level: each field the node knows feeds its uses; the rest are skipped.
struct Level<'p, 'r, 'de> {
    walk: Walk<'p, 'r, 'de>,
    node: &'p Node,
    target: Target,
}

seed_is_visitor!(Level);

impl<'de> Visitor<'de> for Level<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    ignore_scalars!();

    // `null`, a list or anything else where an object was expected: its columns stay null.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(found) = map.next_key_seed(Key(&self.node.steps))? {
            match found {
                Some(step) => self.walk.step(&mut map, step, self.target)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key of an object level, looked up among the fields the level knows (escaped keys too: the
/// parser hands them over decoded).
struct Key<'p>(&'p Fields);

impl<'de, 'p> DeserializeSeed<'de> for Key<'p> {
    type Value = Option<&'p Step>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, 'p> Visitor<'de> for Key<'p> {
    type Value = Option<&'p Step>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.get(key))
    }
}

/// A metadata map into `(table, key, value)` rows.
struct Metadata<'p, 'r, 'de> {
    walk: Walk<'p, 'r, 'de>,
    table: usize,
}

impl<'de> Visitor<'de> for Metadata<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a metadata map")
    }

    ignore_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        drain_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key()? {
            let value = map.next_value_seed(TextSeed)?;
            self.walk.rows.metadata.push((self.table, key, value));
        }
        Ok(())
    }
}

/// An array of items, or a list object (`{"data": [...], "has_more": …}`), into child rows.
struct Children<'p, 'r, 'de> {
    walk: Walk<'p, 'r, 'de>,
    table: usize,
}

seed_is_visitor!(Children);

impl<'de> Visitor<'de> for Children<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    ignore_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if self.walk.plan.items[self.table].is_none() {
            return drain_seq(seq);
        }
        while seq
            .next_element_seed(Item {
                walk: self.walk.reborrow(),
                table: self.table,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key()? {
            match key.as_ref() {
                "data" => map.next_value_seed(Children {
                    walk: self.walk.reborrow(),
                    table: self.table,
                })?,
                "has_more" => {
                    let more: &RawValue = map.next_value()?;
                    let completable = self.walk.plan.completable.get(self.table) == Some(&true);
                    if more.get() == "true"
                        && completable
                        && !self.walk.rows.truncated.contains(&self.table)
                    {
                        self.walk.rows.truncated.push(self.table);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One item of a child list: a row whose cells are the last entry of `rows.children`.
struct Item<'p, 'r, 'de> {
    walk: Walk<'p, 'r, 'de>,
    table: usize,
}

impl<'de> DeserializeSeed<'de> for Item<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        let plan = self.walk.plan;
        let (Some(node), Some(columns)) = (
            plan.items.get(self.table).and_then(Option::as_ref),
            plan.child_columns.get(self.table),
        ) else {
            return IgnoredAny::deserialize(de).map(drop);
        };
        self.walk
            .rows
            .children
            .push((self.table, vec![Cell::Null; columns.len()]));
        Level {
            walk: self.walk,
            node,
            target: Target::Child,
        }
        .deserialize(de)
    }
}

/// One column's value.
struct CellSeed<'p>(&'p Column);

impl<'de> DeserializeSeed<'de> for CellSeed<'_> {
    type Value = Cell<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Cell<'de>, D::Error> {
        if self.0.kind == ColumnType::Json {
            let raw = <&'de RawValue>::deserialize(de)?.get();
            return Ok(if raw == "null" {
                Cell::Null
            } else {
                Cell::Str(compact(raw))
            });
        }
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed<'_> {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Null)
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
        Ok(Cell::Str(Cow::Owned(v.to_owned())))
    }

    /// An expanded reference: its `id`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        let mut cell = Cell::Bad;
        while let Some(Text(key)) = map.next_key()? {
            if self.0.reference && key == "id" {
                cell = map.next_value_seed(TextSeed)?.map_or(Cell::Bad, Cell::Str);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(cell)
    }

    /// A list of scalars, joined with commas.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        if !self.0.join {
            drain_seq(seq)?;
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

/// A string, borrowed from the text when it holds no escapes.
pub(super) struct Text<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(V)
    }
}

/// Any JSON value as text: strings as they are, numbers as written, booleans as `true`/`false`,
/// objects and lists as compact JSON; `null` is `None`.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let raw = <&'de RawValue>::deserialize(de)?.get();
        Ok(match raw.as_bytes().first() {
            Some(b'n') => None,
            // A string without escapes is the text between its quotes.
            Some(b'"') if !raw.contains('\\') => Some(Cow::Borrowed(&raw[1..raw.len() - 1])),
            Some(b'"') => Some(Cow::Owned(
                serde_json::from_str::<String>(raw).map_err(de::Error::custom)?,
            )),
            _ => Some(compact(raw)),
        })
    }
}

/// `json` (one valid JSON value) without the whitespace between its tokens; strings and numbers stay
/// exactly as written. Borrowed when there is no such whitespace (any page that is not pretty-printed).
pub fn compact(json: &str) -> Cow<'_, str> {
    let spaced = |b: &u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    if !json.as_bytes().iter().any(spaced) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii() && spaced(&(c as u8)) {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn compact_keeps_strings_and_numbers_as_written() {
        let text = "{ \"a b\" : [ 1.50 , \"x \\\" y\" ,\n\t{ } ] , \"é\\n\":null }";
        assert_eq!(compact(text), r#"{"a b":[1.50,"x \" y",{}],"é\n":null}"#);
        assert!(matches!(compact("[1,2]"), std::borrow::Cow::Borrowed(_)));
    }
}
