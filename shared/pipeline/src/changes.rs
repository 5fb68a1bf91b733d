//! The change feed's pure logic (no I/O): which window to read, and how a window's events collapse to
//! one change per object. One read of `/v1/events` per account and mode brings every dataset's new
//! objects, updates and deletes, so API calls grow with changes, not with the number of tables; the
//! engine's feed stage ([`crate::engine`]) does the reading and applying.
//!
//! A run reads the window `[cursor - overlap, now - lag)` of Stripe's clock. The lag leaves events Stripe
//! may still be writing to the next run; the overlap reads the end of the previous window again, so events
//! that became visible late are still seen. Events are deduplicated by id and collapsed to the newest
//! change per object: the list is newest first, ordered by `created` and, within a second, by when Stripe
//! recorded the event, so the first event of an object in list order is its newest (event ids are random
//! and say nothing about order). Re-applying a change in a later window is harmless: loads keep the row
//! with the newest `batch_timestamp`, and a change carries its event's time.
//!
//! Event payloads are rendered in the account's default API version. When that is not the pinned
//! version, field names may differ, so the payload is not converted: the object is fetched again
//! (rendered in the pinned version) and that read is loaded instead.

use crate::catalog::Dataset;
use crate::stripe::API_VERSION;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Stripe keeps events for 30 days.
pub const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;
/// A window must start at least this long after the retention edge: the read itself takes time, and an
/// event that expires while the feed pages would be a silent gap.
pub const RETENTION_MARGIN_SECS: i64 = 3600;
/// Added to an event's `created` (in microseconds) for its `batch_timestamp`, so that an event wins over a
/// list read of the same second: the read may have happened before the change.
pub const EVENT_TIE_MICROS: i64 = 500_000;
/// The same for a pushed event, one microsecond less: pushes arrive in any order, so of two versions
/// of an object made in the same second, the one pushed last may be the older. The feed's read of that
/// second (whose list order is Stripe's) then wins the tie, and a push delayed past it does not undo
/// it; an event of a later second still wins over both.
pub const PUSH_TIE_MICROS: i64 = EVENT_TIE_MICROS - 1;

/// One list page of `/v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventPage {
    pub data: Vec<Event>,
    #[serde(default)]
    pub has_more: bool,
}

/// The parts of an event the feed needs; everything else is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub created: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub api_version: Option<String>,
    pub data: EventData,
    /// Live or test data; where a pushed event goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livemode: Option<bool>,
    /// The connected account the event happened in (Connect); where a pushed event goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// The newest change of one object within a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    /// Event `created` (Stripe's clock).
    pub created: i64,
    pub object: Value,
    pub deleted: bool,
    /// Rendered in the pinned API version: its fields map onto the catalog's columns.
    pub trusted: bool,
}

/// Counts of one window, for the summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FeedCounts {
    pub events: u64,
    pub duplicates: u64,
    /// Events about objects of datasets not being synced (or of no dataset).
    pub ignored: u64,
    /// Distinct objects changed.
    pub objects: u64,
    /// Objects fetched again because their event was rendered in another API version.
    pub refetched: u64,
}

impl FeedCounts {
    /// Adds the counts of another piece of the same window.
    pub fn add(&mut self, other: &FeedCounts) {
        self.events += other.events;
        self.duplicates += other.duplicates;
        self.ignored += other.ignored;
        self.objects += other.objects;
        self.refetched += other.refetched;
    }
}

/// Collapses a window's events to the newest change per object, grouped by dataset name.
#[derive(Debug, Default)]
pub struct Collapser {
    seen: HashSet<String>,
    /// Keyed by dataset name and object id: objects of two datasets may share an id (a recurring
    /// price and its plan).
    by_object: HashMap<(String, String), Change>,
    pub counts: FeedCounts,
}

impl Collapser {
    /// Adds events in list order (newest first, page after page).
    pub fn add(&mut self, events: Vec<Event>, datasets: &[&Dataset]) {
        for e in events {
            self.counts.events += 1;
            if !self.seen.insert(e.id.clone()) {
                self.counts.duplicates += 1;
                continue;
            }
            let Some((dataset, id, of_child)) = route(datasets, &e.data.object) else {
                self.counts.ignored += 1;
                continue;
            };
            // Later in the list is older, unless Stripe listed it out of order by `created`.
            let key = (dataset.name.clone(), id);
            if self
                .by_object
                .get(&key)
                .is_some_and(|c| c.created >= e.created)
            {
                continue;
            }
            let id = key.1.clone();
            let change = if of_child {
                Change {
                    id: id.clone(),
                    created: e.created,
                    object: Value::Null,
                    deleted: false,
                    trusted: false,
                }
            } else {
                Change {
                    id: id.clone(),
                    created: e.created,
                    deleted: dataset.delete_events.contains(&e.kind)
                        || e.data.object["deleted"].as_bool() == Some(true),
                    trusted: e.api_version.as_deref() == Some(API_VERSION),
                    object: e.data.object,
                }
            };
            self.by_object.insert(key, change);
        }
    }

    /// The changes per dataset name, each list in a stable order (by object id).
    pub fn finish(mut self) -> (HashMap<String, Vec<Change>>, FeedCounts) {
        self.counts.objects = self.by_object.len() as u64;
        let mut out: HashMap<String, Vec<Change>> = HashMap::new();
        for ((dataset, _), change) in self.by_object {
            out.entry(dataset).or_default().push(change);
        }
        for changes in out.values_mut() {
            changes.sort_by(|a, b| a.id.cmp(&b.id));
        }
        (out, self.counts)
    }
}

/// The dataset an event's object belongs to and the id of the object that changed: its own, or, for
/// an object of a fetched table (a value list's item), its parent's, which is then read again with the
/// complete list (`true`).
fn route<'d>(datasets: &[&'d Dataset], object: &Value) -> Option<(&'d Dataset, String, bool)> {
    let object_type = object["object"].as_str().unwrap_or_default();
    if let Some(d) = datasets.iter().find(|d| d.object == object_type) {
        return Some((d, object["id"].as_str()?.to_string(), false));
    }
    let (d, field) = datasets
        .iter()
        .find_map(|d| Some((*d, d.parent_field_of(object_type)?)))?;
    Some((d, reference_id(&object[field])?, true))
}

/// The id a reference holds: the string, or an expanded object's `id`.
fn reference_id(v: &Value) -> Option<String> {
    v.as_str().or_else(|| v["id"].as_str()).map(str::to_string)
}

/// What the feed must do before reading, given its cursor and Stripe's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStart {
    /// No cursor yet: start the feed now (the backfill covers everything before).
    Begin,
    /// The window's start is past Stripe's event retention: events are lost; re-backfill.
    Cliff { cursor: i64 },
    /// Read `[from, to)`.
    Read { from: i64, to: i64 },
    /// Nothing to read yet (the window is empty).
    Wait,
}

/// Decides the feed's window.
pub fn start(cursor: Option<i64>, now: i64, lag: i64, overlap: i64) -> FeedStart {
    let Some(cursor) = cursor else {
        return FeedStart::Begin;
    };
    let from = cursor - overlap;
    if from < now - EVENT_RETENTION_SECS + RETENTION_MARGIN_SECS {
        return FeedStart::Cliff { cursor };
    }
    let to = now - lag;
    if to <= cursor {
        FeedStart::Wait
    } else {
        FeedStart::Read { from, to }
    }
}

/// The query of one page of the window.
pub fn page_params(from: i64, to: i64, after: Option<&str>) -> Vec<(String, String)> {
    let mut p = vec![
        ("limit".to_string(), "100".to_string()),
        ("created[gte]".to_string(), from.to_string()),
        ("created[lt]".to_string(), to.to_string()),
    ];
    if let Some(a) = after {
        p.push(("starting_after".to_string(), a.to_string()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn event(id: &str, created: i64, kind: &str, object: Value, version: &str) -> Event {
        Event {
            id: id.into(),
            created,
            kind: kind.into(),
            api_version: Some(version.into()),
            data: EventData { object },
            livemode: Some(true),
            account: None,
        }
    }

    #[test]
    fn newest_change_per_object_wins_and_duplicates_are_dropped() {
        let datasets: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
        let cus = |name: &str| json!({"id": "cus_1", "object": "customer", "name": name});
        let mut c = Collapser::default();
        let older = event(
            "evt_b",
            20,
            "customer.updated",
            cus("same second, older"),
            API_VERSION,
        );
        // Newest first, as Stripe lists them; evt_b repeats (Stripe may deliver an event twice).
        c.add(
            vec![
                event("evt_c", 20, "customer.updated", cus("new"), API_VERSION),
                older.clone(),
                older,
                event("evt_a", 10, "customer.created", cus("old"), API_VERSION),
                event(
                    "evt_x",
                    9,
                    "balance.available",
                    json!({"object": "balance"}),
                    API_VERSION,
                ),
            ],
            &datasets,
        );
        // A later page repeating an older event changes nothing.
        c.add(
            vec![event(
                "evt_a",
                10,
                "customer.created",
                cus("old"),
                API_VERSION,
            )],
            &datasets,
        );
        let (changes, counts) = c.finish();
        let cus = &changes["customers"];
        assert_eq!(cus.len(), 1);
        assert_eq!(cus[0].object["name"], "new");
        assert!(cus[0].trusted && !cus[0].deleted);
        assert_eq!(
            counts,
            FeedCounts {
                events: 6,
                duplicates: 2,
                ignored: 1,
                objects: 1,
                refetched: 0
            }
        );
    }

    #[test]
    fn objects_of_two_datasets_with_one_id_are_two_changes() {
        let datasets: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
        let mut c = Collapser::default();
        // A recurring price is also a plan with its id: Stripe announces both.
        let price = json!({"id": "price_1", "object": "price", "nickname": "Gold"});
        let plan = json!({"id": "price_1", "object": "plan", "nickname": "Gold"});
        c.add(
            vec![
                event("evt_2", 10, "plan.created", plan, API_VERSION),
                event("evt_1", 10, "price.created", price, API_VERSION),
            ],
            &datasets,
        );
        let (changes, counts) = c.finish();
        assert_eq!(changes["plans"][0].object["object"], "plan");
        assert_eq!(changes["prices"][0].object["object"], "price");
        assert_eq!(counts.objects, 2);
    }

    #[test]
    fn an_event_about_an_object_of_a_fetched_table_reads_its_parent_again() {
        let datasets: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
        let item = |id: &str, list: Value| json!({"id": id, "object": "radar.value_list_item", "value": "a@example.com", "value_list": list});
        let mut c = Collapser::default();
        c.add(
            vec![
                event(
                    "evt_2",
                    20,
                    "radar.value_list_item.deleted",
                    item("rsli_2", json!("rsl_1")),
                    API_VERSION,
                ),
                event(
                    "evt_1",
                    10,
                    "radar.value_list_item.created",
                    item(
                        "rsli_1",
                        json!({"id": "rsl_2", "object": "radar.value_list"}),
                    ),
                    API_VERSION,
                ),
                event(
                    "evt_0",
                    5,
                    "radar.value_list_item.created",
                    item("rsli_0", Value::Null),
                    API_VERSION,
                ),
            ],
            &datasets,
        );
        let (changes, counts) = c.finish();
        let lists = &changes["radar_value_lists"];
        let ids: Vec<&str> = lists.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["rsl_1", "rsl_2"]);
        // Read again, never loaded from the item's payload, and a deleted item is not a deleted list.
        assert!(lists.iter().all(|c| !c.trusted && !c.deleted));
        assert_eq!((counts.objects, counts.ignored), (2, 1));
    }

    #[test]
    fn deletes_and_other_api_versions_are_flagged() {
        let datasets: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
        let mut c = Collapser::default();
        c.add(
            vec![
                event(
                    "evt_1",
                    5,
                    "product.deleted",
                    json!({"id": "prod_1", "object": "product"}),
                    API_VERSION,
                ),
                event(
                    "evt_2",
                    5,
                    "customer.subscription.deleted",
                    json!({"id": "sub_1", "object": "subscription", "status": "canceled"}),
                    "2022-11-15",
                ),
            ],
            &datasets,
        );
        let (changes, _) = c.finish();
        assert!(changes["products"][0].deleted);
        // A canceled subscription is an update (the row stays, status canceled), not a delete.
        let sub = &changes["subscriptions"][0];
        assert!(!sub.deleted && !sub.trusted);
    }

    #[test]
    fn windows_lag_overlap_and_the_retention_cliff() {
        assert_eq!(start(None, 1_000_000, 60, 300), FeedStart::Begin);
        assert_eq!(
            start(Some(999_000), 1_000_000, 60, 300),
            FeedStart::Read {
                from: 998_700,
                to: 999_940
            }
        );
        assert_eq!(start(Some(999_990), 1_000_000, 60, 300), FeedStart::Wait);
        let now = 100 * 86_400;
        let old = now - EVENT_RETENTION_SECS + RETENTION_MARGIN_SECS;
        assert_eq!(
            start(Some(old), now, 60, 300),
            FeedStart::Cliff { cursor: old }
        );
        assert!(matches!(
            start(Some(old + 300), now, 60, 300),
            FeedStart::Read { .. }
        ));
    }
}
