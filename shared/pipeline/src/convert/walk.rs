//! A catalog-directed walk over one object's JSON text: values go straight from the [`Scanner`] into
//! cells of the rows being built, and every field the catalog does not map is skipped without being
//! materialised. This is what makes conversion cheap: no JSON tree is built for a page.
//!
//! Parsed objects (events, objects whose nested lists had to be completed) are written out as text and
//! take the same walk: there is one conversion, not two.

use super::fields::Fields;
use super::order::KeyOrders;
use super::scan::{JsonError, Kind, Number, Scanner};
use crate::catalog::{Column, ColumnType, Table, TableKind};
use std::borrow::Cow;

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

/// The fields of one JSON object level that lead to something.
#[derive(Debug, Default)]
pub struct Node {
    steps: Fields<Step>,
    /// This level's number in its plan (where [`KeyOrders`] keeps its keys).
    number: usize,
}

impl Node {
    fn step_at(&mut self, path: &[String]) -> &mut Step {
        let (first, rest) = path.split_first().expect("catalog paths are never empty");
        let step = self.steps.entry(first);
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

    /// Numbers this level and the levels under it from `next` on.
    fn number(&mut self, next: &mut usize) {
        self.number = *next;
        *next += 1;
        for step in self.steps.values_mut() {
            if let Some(inner) = &mut step.inner {
                inner.number(next);
            }
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
        let mut levels = 0;
        root.number(&mut levels);
        for item in items.iter_mut().flatten() {
            item.number(&mut levels);
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
    /// A nested list was cut off (`has_more`): the object must be completed before conversion.
    pub truncated: bool,
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
}

/// Where the columns of the object level being walked go.
#[derive(Clone, Copy)]
enum Target {
    Main,
    /// The last row of `children`.
    Child,
}

/// Walks the object the scanner is at into `rows` (whose buffers are reused from object to object).
/// A value that is not an object leaves every column null.
pub fn object<'de>(
    plan: &Plan,
    keys: &mut KeyOrders,
    s: &mut Scanner<'de>,
    rows: &mut ObjectRows<'de>,
) -> Result<(), JsonError> {
    if rows.main.len() == plan.main_columns.len() {
        for &i in &rows.set {
            rows.main[i] = Cell::Null;
        }
    } else {
        rows.main.clear();
        rows.main.resize(plan.main_columns.len(), Cell::Null);
    }
    rows.set.clear();
    rows.metadata.clear();
    rows.children.clear();
    rows.truncated = false;
    Walk { plan, keys, rows }.level(s, &plan.root, Target::Main)
}

struct Walk<'p, 'r, 'de> {
    plan: &'p Plan,
    keys: &'r mut KeyOrders,
    rows: &'r mut ObjectRows<'de>,
}

impl<'p, 'de> Walk<'p, '_, 'de> {
    /// One level of an object: each field the node knows feeds its uses; the rest are skipped.
    fn level(
        &mut self,
        s: &mut Scanner<'de>,
        node: &'p Node,
        target: Target,
    ) -> Result<(), JsonError> {
        // `null` (or anything else) where an object was expected: its columns stay null.
        if s.kind()? != Kind::Object {
            return s.skip();
        }
        if !s.object()? {
            return Ok(());
        }
        let mut position = 0;
        loop {
            let found = self
                .keys
                .next_key(s, node.number, position, |key| node.steps.index_of(key))?;
            position += 1;
            match found.and_then(|i| node.steps.value(i)) {
                Some(step) => self.step(s, step, target)?,
                None => s.skip()?,
            }
            if !s.more_members()? {
                return Ok(());
            }
        }
    }

    /// One field's value, fed to each of its uses.
    fn step(
        &mut self,
        s: &mut Scanner<'de>,
        step: &'p Step,
        target: Target,
    ) -> Result<(), JsonError> {
        // A field with several uses (say a column and a deeper path) is read once per use.
        let start = s.position();
        let mut read = false;
        for &role in &step.roles {
            if read {
                s.rewind(start);
            }
            self.feed(s, role, target)?;
            read = true;
        }
        if let Some(inner) = &step.inner {
            if read {
                s.rewind(start);
            }
            self.level(s, inner, target)?;
            read = true;
        }
        if read {
            Ok(())
        } else {
            s.skip()
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

    /// Feeds one field value to one use.
    fn feed(&mut self, s: &mut Scanner<'de>, role: Role, target: Target) -> Result<(), JsonError> {
        match role {
            Role::Column(i) => {
                let Some(col) = self.column(i, target) else {
                    return s.skip();
                };
                let cell = cell(s, col)?;
                match target {
                    Target::Main => {
                        if let Some(slot) = self.rows.main.get_mut(i) {
                            // A repeated field is overwritten, not listed twice; nulls are not listed.
                            if matches!(slot, Cell::Null) && !matches!(cell, Cell::Null) {
                                self.rows.set.push(i);
                            }
                            *slot = cell;
                        }
                    }
                    Target::Child => {
                        let row = self.rows.children.last_mut();
                        if let Some(slot) = row.and_then(|(_, c)| c.get_mut(i)) {
                            *slot = cell;
                        }
                    }
                }
                Ok(())
            }
            Role::Metadata(t) => self.metadata(s, t),
            Role::Children(t) => self.children(s, t),
        }
    }

    /// A metadata map into `(table, key, value)` rows.
    fn metadata(&mut self, s: &mut Scanner<'de>, table: usize) -> Result<(), JsonError> {
        s.members(|s, key| {
            let value = text(s)?;
            self.rows.metadata.push((table, key, value));
            Ok(())
        })
    }

    /// An array of items, or a list object (`{"data": [...], "has_more": …}`), into child rows.
    fn children(&mut self, s: &mut Scanner<'de>, table: usize) -> Result<(), JsonError> {
        match s.kind()? {
            Kind::Array => self.items(s, table),
            Kind::Object => s.members(|s, key| match key.as_ref() {
                "data" => self.children(s, table),
                "has_more" if s.kind()? == Kind::Bool => {
                    if s.bool()? {
                        self.rows.truncated = true;
                    }
                    Ok(())
                }
                _ => s.skip(),
            }),
            _ => s.skip(),
        }
    }

    /// The items of a child list: one row each, whose cells are the last entry of `rows.children`.
    fn items(&mut self, s: &mut Scanner<'de>, table: usize) -> Result<(), JsonError> {
        let Some(node) = self.plan.items[table].as_ref() else {
            return s.skip();
        };
        if !s.array()? {
            return Ok(());
        }
        let width = self.plan.child_columns[table].len();
        loop {
            self.rows.children.push((table, vec![Cell::Null; width]));
            self.level(s, node, Target::Child)?;
            if !s.more_elements()? {
                return Ok(());
            }
        }
    }
}

/// One column's value.
fn cell<'de>(s: &mut Scanner<'de>, col: &Column) -> Result<Cell<'de>, JsonError> {
    let kind = s.kind()?;
    if col.kind == ColumnType::Json {
        if kind == Kind::Null {
            s.null()?;
            return Ok(Cell::Null);
        }
        return Ok(Cell::Str(s.compact()?));
    }
    Ok(match kind {
        Kind::Null => {
            s.null()?;
            Cell::Null
        }
        Kind::Bool => Cell::Bool(s.bool()?),
        Kind::Number => match s.number()? {
            Number::U64(u) => Cell::U64(u),
            Number::I64(i) => Cell::I64(i),
            Number::F64(f) => Cell::F64(f),
        },
        Kind::String => Cell::Str(s.string()?),
        // An expanded reference: its `id`.
        Kind::Object => {
            let mut cell = Cell::Bad;
            s.members(|s, key| {
                if col.reference && key == "id" {
                    cell = text(s)?.map_or(Cell::Bad, Cell::Str);
                    Ok(())
                } else {
                    s.skip()
                }
            })?;
            cell
        }
        // A list of scalars: joined with commas.
        Kind::Array if col.join => {
            let mut joined = String::new();
            if s.array()? {
                loop {
                    let item = text(s)?;
                    joined.push_str(item.as_deref().unwrap_or("null"));
                    if !s.more_elements()? {
                        break;
                    }
                    joined.push(',');
                }
            }
            Cell::Str(Cow::Owned(joined))
        }
        Kind::Array => {
            s.skip()?;
            Cell::Bad
        }
    })
}

/// Any JSON value as text: strings as they are, numbers as written, booleans as `true`/`false`,
/// objects and lists as compact JSON; `null` is `None`.
fn text<'de>(s: &mut Scanner<'de>) -> Result<Option<Cow<'de, str>>, JsonError> {
    Ok(match s.kind()? {
        Kind::Null => {
            s.null()?;
            None
        }
        Kind::String => Some(s.string()?),
        Kind::Number => Some(Cow::Borrowed(s.raw_number()?)),
        Kind::Bool => Some(Cow::Borrowed(if s.bool()? { "true" } else { "false" })),
        Kind::Object | Kind::Array => Some(s.compact()?),
    })
}
