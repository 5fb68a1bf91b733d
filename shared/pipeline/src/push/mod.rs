//! Events Stripe pushes, as opposed to those the feed reads from `/v1/events`: a webhook delivery (one
//! signed event per request, [`signature`]) or an Amazon EventBridge delivery (the event is the
//! envelope's `detail`). Both become [`Event`]s, grouped by the account-mode they belong to, and the
//! engine applies them with the feed's change logic ([`crate::engine::Engine::apply_pushed`]).

pub mod signature;

use crate::changes::Event;
use signature::SignatureError;
use std::collections::BTreeMap;

/// The largest body a webhook delivery may have. Stripe's events are far smaller (an object and the
/// fields that changed); anything larger is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Why a delivery is not an event. The texts never quote the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the body is {0} bytes, over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the body is not a Stripe event: {0}")]
    NotAnEvent(String),
}

/// The event of a webhook delivery (its body, checked by [`signature::verify`] first).
pub fn webhook_event(body: &[u8]) -> Result<Event, DeliveryError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DeliveryError::TooLarge(body.len()));
    }
    let event: Event =
        serde_json::from_slice(body).map_err(|e| DeliveryError::NotAnEvent(e.to_string()))?;
    checked(event)
}

/// A Stripe event delivered by Amazon EventBridge, and the partner event source it came from
/// (`aws.partner/stripe.com/<event destination>`: which Stripe account's destination sent it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusDelivery {
    pub source: String,
    pub event: Event,
}

/// The Stripe event of an Amazon EventBridge delivery: the `detail` of the envelope (`source` is
/// `aws.partner/stripe.com/…`, `detail-type` the event's type).
pub fn eventbridge_event(envelope: &[u8]) -> Result<BusDelivery, DeliveryError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        source: String,
        detail: Event,
    }
    if envelope.len() > MAX_BODY_BYTES {
        return Err(DeliveryError::TooLarge(envelope.len()));
    }
    let envelope: Envelope =
        serde_json::from_slice(envelope).map_err(|e| DeliveryError::NotAnEvent(e.to_string()))?;
    if !envelope.source.starts_with("aws.partner/stripe.com") {
        return Err(DeliveryError::NotAnEvent(format!(
            "the EventBridge source is '{}', not Stripe's (aws.partner/stripe.com/…)",
            envelope.source
        )));
    }
    Ok(BusDelivery {
        source: envelope.source,
        event: checked(envelope.detail)?,
    })
}

/// Why a webhook delivery is refused: its signature, or its body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

impl Refused {
    /// The HTTP status the delivery is answered with: 413 for a body over the limit, else 400 (Stripe
    /// shows either in the Dashboard, and retries neither into success).
    pub fn status(&self) -> u16 {
        match self {
            Refused::Delivery(DeliveryError::TooLarge(_)) => 413,
            _ => 400,
        }
    }
}

/// A webhook delivery checked as the CLI's `serve-webhooks` and the webhook function both check it:
/// the size first (no HMAC over a huge body), then `Stripe-Signature` (`header`) against `secrets`
/// at `now`, then the body as an event.
pub fn webhook_delivery(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<Event, Refused> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DeliveryError::TooLarge(body.len()).into());
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    signature::verify(header, body, &secrets, now)?;
    Ok(webhook_event(body)?)
}

/// An event names its mode: without it, it could go to the wrong schema.
fn checked(event: Event) -> Result<Event, DeliveryError> {
    if !event.id.starts_with("evt_") {
        return Err(DeliveryError::NotAnEvent(format!(
            "the id '{}' is not an event's (evt_…)",
            event.id
        )));
    }
    if event.livemode.is_none() {
        return Err(DeliveryError::NotAnEvent(format!(
            "event {} has no livemode",
            event.id
        )));
    }
    Ok(event)
}

/// Where a pushed event goes: live or test, and the connected account it happened in (`None`: the
/// account whose endpoint received it).
pub type Destination = (bool, Option<String>);

/// Pushed events grouped by [`Destination`], each group in arrival order.
pub fn route(events: Vec<Event>) -> BTreeMap<Destination, Vec<Event>> {
    let mut groups: BTreeMap<Destination, Vec<Event>> = BTreeMap::new();
    for e in events {
        let to = (e.livemode.unwrap_or(false), e.account.clone());
        groups.entry(to).or_default().push(e);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, livemode: bool, account: Option<&str>) -> serde_json::Value {
        let mut e = serde_json::json!({
            "id": id, "object": "event", "created": 1_700_000_000, "type": "customer.updated",
            "api_version": "2023-08-16", "livemode": livemode,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        });
        if let Some(a) = account {
            e["account"] = a.into();
        }
        e
    }

    #[test]
    fn a_webhook_body_and_an_eventbridge_envelope_give_the_same_event() {
        let body = event("evt_1", true, None);
        let from_webhook = webhook_event(body.to_string().as_bytes()).unwrap();
        let envelope = serde_json::json!({
            "version": "0", "id": "6a7e8feb", "detail-type": "customer.updated",
            "source": "aws.partner/stripe.com/ed_test_61Sx", "account": "123456789012",
            "time": "2026-12-07T10:00:00Z", "region": "us-east-1", "resources": [],
            "detail": body,
        });
        let from_bus = eventbridge_event(envelope.to_string().as_bytes()).unwrap();
        assert_eq!(from_bus.source, "aws.partner/stripe.com/ed_test_61Sx");
        assert_eq!(from_webhook, from_bus.event);
        assert_eq!(from_bus.event.livemode, Some(true));
    }

    #[test]
    fn what_is_not_a_stripe_event_is_refused_without_quoting_it() {
        let secret_looking = br#"{"id":"cus_sk_live_secretvalue","created":1}"#;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not JSON", b"hello".to_vec()),
            ("not an event", secret_looking.to_vec()),
            (
                "not an event id",
                event("cus_1", true, None).to_string().into_bytes(),
            ),
            ("no livemode", {
                let mut e = event("evt_1", true, None);
                e.as_object_mut().unwrap().remove("livemode");
                e.to_string().into_bytes()
            }),
            ("too large", vec![b' '; MAX_BODY_BYTES + 1]),
        ];
        for (what, body) in cases {
            let e = webhook_event(&body).expect_err(what);
            assert!(!e.to_string().contains("sk_live"), "{what}: {e}");
        }
        let foreign = serde_json::json!({"source": "aws.s3", "detail": event("evt_1", true, None)});
        assert!(eventbridge_event(foreign.to_string().as_bytes()).is_err());
    }

    #[test]
    fn events_are_grouped_by_mode_and_connected_account() {
        let events: Vec<Event> = [
            event("evt_1", true, None),
            event("evt_2", false, None),
            event("evt_3", true, Some("acct_9")),
            event("evt_4", true, None),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let groups = route(events);
        let ids =
            |k: &Destination| -> Vec<String> { groups[k].iter().map(|e| e.id.clone()).collect() };
        assert_eq!(groups.len(), 3);
        assert_eq!(ids(&(true, None)), ["evt_1", "evt_4"]);
        assert_eq!(ids(&(false, None)), ["evt_2"]);
        assert_eq!(ids(&(true, Some("acct_9".into()))), ["evt_3"]);
    }
}
