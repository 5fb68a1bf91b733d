//! List requests: parameter validation exactly as Stripe answers it, and the list envelope.

use crate::error::ApiError;
use crate::resources::Res;
use bytes::Bytes;

/// Stripe's page size bounds.
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 10;
/// `types[]` on `/v1/events` takes at most this many types.
pub const MAX_EVENT_TYPES: usize = 20;

/// How one filter value matches an object attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Eq(String),
    NotEq(String),
    /// `type=customer.*`: a `*` wildcard between a prefix and a suffix.
    Glob(String, String),
    AnyOf(Vec<Match>),
}

impl Match {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Match::Eq(v) => v == value,
            Match::NotEq(v) => v != value,
            Match::Glob(pre, suf) => {
                value.len() >= pre.len() + suf.len()
                    && value.starts_with(pre.as_str())
                    && value.ends_with(suf.as_str())
            }
            Match::AnyOf(ms) => ms.iter().any(|m| m.matches(value)),
        }
    }

    fn event_type(t: &str) -> Match {
        match t.split_once('*') {
            Some((pre, suf)) => Match::Glob(pre.into(), suf.into()),
            None => Match::Eq(t.into()),
        }
    }
}

/// A validated list request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub limit: usize,
    pub starting_after: Option<String>,
    pub ending_before: Option<String>,
    /// Inclusive lower bound of `created`.
    pub created_from: i64,
    /// Exclusive upper bound of `created`.
    pub created_to: i64,
    /// Objects created before this are invisible (event retention).
    pub not_before: i64,
    /// Filters by position in `ResourceDef::filters`.
    pub filters: Vec<(usize, Match)>,
    /// `expand[]` paths with the leading `data.` removed.
    pub expand: Vec<String>,
}

impl ListQuery {
    /// No filters, `limit` items.
    pub fn default_for(limit: usize) -> ListQuery {
        ListQuery {
            limit,
            starting_after: None,
            ending_before: None,
            created_from: i64::MIN,
            created_to: i64::MAX,
            not_before: i64::MIN,
            filters: Vec::new(),
            expand: Vec::new(),
        }
    }

    /// Validates the query parameters of `GET /v1/<res>`.
    pub fn parse(res: Res, params: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let def = res.def();
        let mut q = ListQuery::default_for(DEFAULT_LIMIT);
        let mut event_type: Option<Match> = None;
        let mut event_types: Vec<Match> = Vec::new();
        let mut status_seen = false;
        for (key, value) in params {
            let base = array_base(key);
            match base {
                "limit" => q.limit = parse_limit(value)?,
                "starting_after" => q.starting_after = Some(value.clone()),
                "ending_before" => q.ending_before = Some(value.clone()),
                "expand" if key != "expand" => match value.strip_prefix("data.") {
                    Some(path) => q.expand.push(path.to_string()),
                    None => return Err(ApiError::invalid(None, format!("This property cannot be expanded ({value}). You may want to try expanding 'data.{value}' instead.")).param("expand")),
                },
                "created" if def.created_filter => {
                    let bound = parse_int(key, value)?;
                    match key.as_str() {
                        "created" => {
                            q.created_from = q.created_from.max(bound);
                            q.created_to = q.created_to.min(bound.saturating_add(1));
                        }
                        "created[gt]" => q.created_from = q.created_from.max(bound.saturating_add(1)),
                        "created[gte]" => q.created_from = q.created_from.max(bound),
                        "created[lt]" => q.created_to = q.created_to.min(bound),
                        "created[lte]" => q.created_to = q.created_to.min(bound.saturating_add(1)),
                        _ => return Err(ApiError::unknown_parameter(key)),
                    }
                }
                "type" if res == Res::Event => event_type = Some(Match::event_type(value)),
                "types" if res == Res::Event && key != "types" => event_types.push(Match::event_type(value)),
                "status" if res == Res::Subscription => {
                    status_seen = true;
                    let i = filter_index(res, "status");
                    match value.as_str() {
                        "all" => {}
                        "ended" => q.filters.push((i, Match::AnyOf(vec![Match::Eq("canceled".into()), Match::Eq("incomplete_expired".into())]))),
                        "active" | "past_due" | "unpaid" | "canceled" | "incomplete" | "incomplete_expired" | "trialing" | "paused" => {
                            q.filters.push((i, Match::Eq(value.clone())))
                        }
                        other => {
                            return Err(ApiError::invalid(None, format!("Invalid status: must be one of active, all, canceled, ended, incomplete, incomplete_expired, past_due, paused, trialing, or unpaid (got {other})")).param("status"))
                        }
                    }
                }
                _ => match def.filters.iter().position(|f| f.name() == key) {
                    Some(i) => q.filters.push((i, Match::Eq(value.clone()))),
                    None => return Err(ApiError::unknown_parameter(key)),
                },
            }
        }
        if q.starting_after.is_some() && q.ending_before.is_some() {
            return Err(ApiError::invalid(
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        for required in def.required {
            if !params.iter().any(|(k, _)| k == required) {
                return Err(ApiError::missing_parameter(required));
            }
        }
        if res == Res::Subscription && !status_seen {
            // Stripe's silent default: canceled subscriptions are hidden unless asked for.
            q.filters
                .push((filter_index(res, "status"), Match::NotEq("canceled".into())));
        }
        if res == Res::Event {
            let i = filter_index(res, "type");
            match (event_type, event_types.is_empty()) {
                (Some(_), false) => {
                    return Err(ApiError::invalid(
                        None,
                        "You may only specify one of these parameters: type, types.",
                    )
                    .param("types"))
                }
                (Some(m), true) => q.filters.push((i, m)),
                (None, false) if event_types.len() > MAX_EVENT_TYPES => {
                    return Err(ApiError::invalid(
                        None,
                        format!(
                            "You may only specify up to {MAX_EVENT_TYPES} types (got {}).",
                            event_types.len()
                        ),
                    )
                    .param("types"))
                }
                (None, false) => q.filters.push((i, Match::AnyOf(event_types))),
                (None, true) => {}
            }
        }
        Ok(q)
    }
}

/// `expand[]`, `expand[0]` → `expand`; other keys unchanged; `created[gte]` → `created`.
fn array_base(key: &str) -> &str {
    key.split_once('[').map_or(key, |(base, _)| base)
}

fn filter_index(res: Res, name: &str) -> usize {
    res.def()
        .filters
        .iter()
        .position(|f| f.name() == name)
        .unwrap_or(usize::MAX)
}

fn parse_int(key: &str, value: &str) -> Result<i64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid(
            Some("parameter_invalid_integer"),
            format!("Invalid integer: {value}"),
        )
        .param(key)
    })
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    let n = parse_int("limit", value)?;
    if n < 1 {
        return Err(ApiError::invalid(
            Some("parameter_invalid_integer"),
            "This value must be greater than or equal to 1.",
        )
        .param("limit"));
    }
    if n > MAX_LIMIT as i64 {
        return Err(ApiError::invalid(
            Some("parameter_invalid_integer"),
            format!(
                "This value must be less than or equal to {MAX_LIMIT} (it currently is '{n}')."
            ),
        )
        .param("limit"));
    }
    Ok(n as usize)
}

/// One page of objects.
#[derive(Debug, Default)]
pub struct Page {
    pub data: Vec<Bytes>,
    pub has_more: bool,
}

impl Page {
    /// The list envelope as body chunks (objects are not copied).
    pub fn into_chunks(self, url: &str) -> Vec<Bytes> {
        let mut chunks = Vec::with_capacity(self.data.len() * 2 + 2);
        chunks.push(Bytes::from_static(b"{\"object\":\"list\",\"data\":["));
        for (i, obj) in self.data.into_iter().enumerate() {
            if i > 0 {
                chunks.push(Bytes::from_static(b","));
            }
            chunks.push(obj);
        }
        let url = serde_json::to_string(url).unwrap_or_else(|_| "\"\"".into());
        chunks.push(Bytes::from(format!(
            "],\"has_more\":{},\"url\":{url}}}",
            self.has_more
        )));
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limit_bounds() {
        assert_eq!(ListQuery::parse(Res::Charge, &p(&[])).unwrap().limit, 10);
        assert_eq!(
            ListQuery::parse(Res::Charge, &p(&[("limit", "100")]))
                .unwrap()
                .limit,
            100
        );
        for bad in ["0", "101", "x"] {
            let e = ListQuery::parse(Res::Charge, &p(&[("limit", bad)])).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some("limit")));
        }
    }

    #[test]
    fn created_only_where_supported() {
        let q = ListQuery::parse(
            Res::Charge,
            &p(&[("created[gte]", "5"), ("created[lt]", "9")]),
        )
        .unwrap();
        assert_eq!((q.created_from, q.created_to), (5, 9));
        let q = ListQuery::parse(Res::Charge, &p(&[("created", "5")])).unwrap();
        assert_eq!((q.created_from, q.created_to), (5, 6));
        let e = ListQuery::parse(
            Res::SubscriptionItem,
            &p(&[("subscription", "sub_1"), ("created[gte]", "5")]),
        )
        .unwrap_err();
        assert_eq!(e.code, Some("parameter_unknown"));
    }

    #[test]
    fn cursors_are_exclusive_of_each_other() {
        let e = ListQuery::parse(
            Res::Charge,
            &p(&[("starting_after", "a"), ("ending_before", "b")]),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn subscriptions_hide_canceled_by_default() {
        let q = ListQuery::parse(Res::Subscription, &p(&[])).unwrap();
        assert_eq!(q.filters[0].1, Match::NotEq("canceled".into()));
        assert!(
            ListQuery::parse(Res::Subscription, &p(&[("status", "all")]))
                .unwrap()
                .filters
                .is_empty()
        );
    }

    #[test]
    fn event_types() {
        let q = ListQuery::parse(Res::Event, &p(&[("type", "customer.*")])).unwrap();
        assert!(q.filters[0].1.matches("customer.subscription.updated"));
        assert!(!q.filters[0].1.matches("charge.updated"));
        let e = ListQuery::parse(Res::Event, &p(&[("type", "a"), ("types[]", "b")])).unwrap_err();
        assert_eq!(e.status, 400);
        let many: Vec<(String, String)> = (0..21)
            .map(|i| ("types[]".to_string(), format!("t{i}")))
            .collect();
        assert!(ListQuery::parse(Res::Event, &many).is_err());
    }

    #[test]
    fn required_and_unknown_parameters() {
        let e = ListQuery::parse(Res::SubscriptionItem, &p(&[])).unwrap_err();
        assert_eq!(e.code, Some("parameter_missing"));
        let e = ListQuery::parse(Res::Charge, &p(&[("bogus", "1")])).unwrap_err();
        assert_eq!(e.code, Some("parameter_unknown"));
    }
}
