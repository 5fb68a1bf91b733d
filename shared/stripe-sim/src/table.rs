//! One resource's objects in one account and mode, kept in Stripe's list order.
//!
//! Invariant: `rows` is sorted ascending by `created` (ties keep insertion order), so "newest first" is a
//! reverse walk and a `created` range is two binary searches. Objects are stored as serialized JSON
//! (`Bytes`), so serving a page copies no object and a million objects fit in well under 2 GB.
//! Deleted objects stay in place, flagged, so ground truth can report them and cursors naming them fail
//! the way Stripe's do.

use crate::error::ApiError;
use crate::list::{ListQuery, Page};
use crate::resources::Res;
use bytes::Bytes;
use std::collections::HashMap;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: Box<str>,
    pub created: i64,
    /// The object as the API serves it (nested lists already cut to Stripe's 10 items).
    pub json: Bytes,
    pub deleted: bool,
    /// Values of the resource's list filters, aligned with `ResourceDef::filters` ("" for null).
    pub attrs: Box<[Box<str>]>,
    /// When the object becomes visible to lists (events under simulated eventual consistency).
    pub visible_at: i64,
}

#[derive(Debug)]
pub struct Table {
    pub res: Res,
    rows: Vec<Row>,
    index: HashMap<Box<str>, u32>,
}

impl Table {
    pub fn new(res: Res) -> Table {
        Table {
            res,
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Appends a row. Rows must arrive in `created` order, or [`Table::sort`] must follow.
    pub fn push(&mut self, row: Row) {
        self.index.insert(row.id.clone(), self.rows.len() as u32);
        self.rows.push(row);
    }

    /// Restores the `created` order after bulk generation (stable: same-second rows keep their order).
    pub fn sort(&mut self) {
        self.rows.sort_by_key(|r| r.created);
        self.index = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i as u32))
            .collect();
    }

    pub fn get(&self, id: &str) -> Option<&Row> {
        self.index.get(id).map(|&i| &self.rows[i as usize])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Row> {
        self.index.get(id).map(|&i| &mut self.rows[i as usize])
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Ids of objects that are not deleted, in `created` order.
    pub fn live_ids(&self) -> Vec<Box<str>> {
        self.rows
            .iter()
            .filter(|r| !r.deleted)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Serves one page of a list request: newest first, exclusive cursors, `has_more` exact.
    pub fn list(&self, q: &ListQuery, now: i64) -> Result<Page, ApiError> {
        let def = self.res.def();
        let lo = self.rows.partition_point(|r| r.created < q.created_from);
        let hi = self.rows.partition_point(|r| r.created < q.created_to);
        let matches = |r: &Row| {
            !r.deleted
                && r.visible_at <= now
                && r.created >= q.not_before
                && q.filters
                    .iter()
                    .all(|(i, v)| r.attrs.get(*i).is_some_and(|a| v.matches(a)))
        };
        let cursor = |param: &str, id: &str| -> Result<usize, ApiError> {
            match self.index.get(id) {
                Some(&i) if (lo..hi).contains(&(i as usize)) && matches(&self.rows[i as usize]) => {
                    Ok(i as usize)
                }
                _ => Err(ApiError::invalid(
                    Some("resource_missing"),
                    format!("No such {}: '{id}'", def.object),
                )
                .param(param)),
            }
        };
        let mut data = Vec::with_capacity(q.limit);
        let has_more;
        if let Some(id) = &q.ending_before {
            // Walk towards newer objects, then present them newest first.
            let start = cursor("ending_before", id)? + 1;
            let mut it = self.rows[start..hi].iter().filter(|r| matches(r));
            data.extend(it.by_ref().take(q.limit).map(|r| r.json.clone()));
            has_more = it.next().is_some();
            data.reverse();
        } else {
            let end = match &q.starting_after {
                Some(id) => cursor("starting_after", id)?,
                None => hi,
            };
            let mut it = self.rows[lo..end].iter().rev().filter(|r| matches(r));
            data.extend(it.by_ref().take(q.limit).map(|r| r.json.clone()));
            has_more = it.next().is_some();
        }
        Ok(Page { data, has_more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::ListQuery;

    fn row(id: &str, created: i64) -> Row {
        Row {
            id: id.into(),
            created,
            json: Bytes::from(format!("\"{id}\"")),
            deleted: false,
            attrs: Box::new([]),
            visible_at: 0,
        }
    }

    fn ids(p: &Page) -> Vec<String> {
        p.data
            .iter()
            .map(|b| {
                String::from_utf8(b.to_vec())
                    .unwrap()
                    .trim_matches('"')
                    .to_string()
            })
            .collect()
    }

    fn table() -> Table {
        let mut t = Table::new(Res::Coupon);
        for (i, c) in [10, 10, 10, 20, 30].iter().enumerate() {
            t.push(row(&format!("c{i}"), *c));
        }
        t
    }

    #[test]
    fn newest_first_with_exclusive_cursors() {
        let t = table();
        let mut q = ListQuery::default_for(2);
        let p = t.list(&q, 100).unwrap();
        assert_eq!(ids(&p), ["c4", "c3"]);
        assert!(p.has_more);
        q.starting_after = Some("c3".into());
        let p = t.list(&q, 100).unwrap();
        assert_eq!(ids(&p), ["c2", "c1"]);
        assert!(p.has_more);
        q.starting_after = Some("c1".into());
        let p = t.list(&q, 100).unwrap();
        assert_eq!(ids(&p), ["c0"]);
        assert!(!p.has_more);
        q.starting_after = None;
        q.ending_before = Some("c1".into());
        let p = t.list(&q, 100).unwrap();
        assert_eq!(ids(&p), ["c3", "c2"]);
        assert!(p.has_more);
    }

    #[test]
    fn created_range_and_deleted_cursor() {
        let mut t = table();
        let mut q = ListQuery::default_for(10);
        q.created_from = 10;
        q.created_to = 20;
        assert_eq!(ids(&t.list(&q, 100).unwrap()), ["c2", "c1", "c0"]);
        t.get_mut("c1").unwrap().deleted = true;
        assert_eq!(ids(&t.list(&q, 100).unwrap()), ["c2", "c0"]);
        q.starting_after = Some("c1".into());
        let e = t.list(&q, 100).unwrap_err();
        assert_eq!((e.status, e.code), (400, Some("resource_missing")));
        // A cursor outside the created filter is missing too.
        q.starting_after = Some("c4".into());
        assert!(t.list(&q, 100).is_err());
    }
}
