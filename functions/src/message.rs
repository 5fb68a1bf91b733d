//! The SQS messages: a slice (which account, which work, which scheduler tick planned it, and how many
//! continuations came before: a list that reached a function's deadline is sent again to finish), or an
//! export in Stripe's layout of the whole lake.

use serde::{Deserialize, Serialize};
use stripe_pipeline::changes::Event;
use stripe_pipeline::engine::SliceWork;
use stripe_pipeline::push;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceMessage {
    /// `<account>/<_events or dataset>@<tick>`, plus `+c<n>` for a continuation: the same tick never
    /// plans the same slice twice.
    pub id: String,
    /// The account's `name` in the accounts table.
    pub account: String,
    /// Connected accounts of that account (a Connect platform): the slice is each one's, and they
    /// run together, their rows delivered together (a cohort of many small accounts, a few files).
    /// A single id is read as a cohort of one.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub connected: Vec<String>,
    /// The Stripe account the key belongs to, as the scheduler's key check found it: the rate
    /// budget's owner, so that two records holding keys of one Stripe account share one budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    #[serde(flatten)]
    pub work: SliceWork,
    /// The scheduler tick (Unix seconds of the scheduled event).
    pub tick: i64,
    #[serde(default)]
    pub continuation: u32,
}

impl SliceMessage {
    pub fn new(account: &str, work: SliceWork, tick: i64) -> SliceMessage {
        SliceMessage {
            id: format!("{account}/{}@{tick}", work.name()),
            account: account.to_string(),
            connected: Vec::new(),
            merchant_id: None,
            work,
            tick,
            continuation: 0,
        }
    }

    /// A slice of the connected account `connected` of the platform `account`:
    /// `<account>/<connected>/<_events or dataset>@<tick>`.
    pub fn connected(account: &str, connected: &str, work: SliceWork, tick: i64) -> SliceMessage {
        SliceMessage {
            id: format!("{account}/{connected}/{}@{tick}", work.name()),
            connected: vec![connected.to_string()],
            ..SliceMessage::new(account, work, tick)
        }
    }

    /// The slices of single connected accounts combined into cohorts of at most `size` accounts:
    /// those of one platform, budget, work and tick, in the order given. Other slices pass as they
    /// are.
    pub fn cohorts(messages: Vec<SliceMessage>, size: usize) -> Vec<SliceMessage> {
        let mut out: Vec<SliceMessage> = Vec::new();
        for m in messages {
            let joins = out.iter_mut().rev().find(|c| {
                !c.connected.is_empty()
                    && !m.connected.is_empty()
                    && c.connected.len() + m.connected.len() <= size.max(1)
                    && (&c.account, &c.merchant_id, &c.work, c.tick, c.continuation)
                        == (&m.account, &m.merchant_id, &m.work, m.tick, m.continuation)
            });
            match joins {
                Some(c) => {
                    c.connected.extend(m.connected);
                    c.id = cohort_id(c);
                }
                None => out.push(m),
            }
        }
        out
    }

    /// The slices this message carries: one per connected account of a cohort, else one.
    pub fn slices(&self) -> usize {
        self.connected.len().max(1)
    }

    /// The id of each slice this message carries (a cohort's: each connected account's), as the
    /// scheduler marks them sent.
    pub fn slice_ids(&self) -> Vec<String> {
        if self.connected.len() < 2 {
            return vec![self.id.clone()];
        }
        self.connected
            .iter()
            .map(|c| format!("{}/{c}/{}@{}", self.account, self.work.name(), self.tick))
            .collect()
    }

    /// The continuation of this slice for some of its connected accounts only (those that did not
    /// finish).
    pub fn continuation_of(&self, connected: Vec<String>) -> SliceMessage {
        let mut next = SliceMessage {
            connected,
            ..self.clone()
        };
        next.id = cohort_id(&next);
        next.continuation()
    }

    /// The same slice, naming the Stripe account whose rate budget it spends.
    pub fn of_merchant(self, merchant_id: &str) -> SliceMessage {
        SliceMessage {
            merchant_id: Some(merchant_id.to_string()),
            ..self
        }
    }

    /// The message that continues this slice after a deadline.
    pub fn continuation(&self) -> SliceMessage {
        let n = self.continuation + 1;
        let base = self.id.split("+c").next().unwrap_or(&self.id);
        SliceMessage {
            id: format!("{base}+c{n}"),
            continuation: n,
            ..self.clone()
        }
    }
}

/// `<account>/<first connected>+<n more>/<work>@<tick>` for a cohort of more than one.
fn cohort_id(m: &SliceMessage) -> String {
    let base = format!("{}@{}", m.work.name(), m.tick);
    match m.connected.as_slice() {
        [] => format!("{}/{base}", m.account),
        [one] => format!("{}/{one}/{base}", m.account),
        [first, rest @ ..] => format!("{}/{first}+{}/{base}", m.account, rest.len()),
    }
}

/// Reads a connected account's id, or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(id) => vec![id],
        OneOrMany::Many(ids) => ids,
    })
}

/// Build the exports of the run date of `export_tick` (one per mode with data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMessage {
    /// `export@<tick>`.
    pub id: String,
    pub export_tick: i64,
}

impl ExportMessage {
    pub fn new(tick: i64) -> ExportMessage {
        ExportMessage {
            id: format!("export@{tick}"),
            export_tick: tick,
        }
    }
}

/// Where a scheduler tick that reached its deadline goes on: at account `account` (accounts go in
/// name order), after its connected account `after_connected` (in id order) when it is a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_connected: Option<String>,
}

/// Plan the rest of scheduler tick `resume_tick` (one that reached its deadline), from `resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickMessage {
    /// `tick@<tick>/<account>`.
    pub id: String,
    pub resume_tick: i64,
    pub resume: Resume,
}

impl TickMessage {
    pub fn new(tick: i64, resume: Resume) -> TickMessage {
        TickMessage {
            id: format!("tick@{tick}/{}", resume.account),
            resume_tick: tick,
            resume,
        }
    }
}

/// A Stripe event pushed to the deployment, from the push queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushMessage {
    /// As an EventBridge rule delivers it: the envelope, whose partner event source names the
    /// account (its record's `event_source`).
    Bus(push::BusDelivery),
    /// From the webhook function, which checked its signature: `{"pushed_to": <account name>,
    /// "event": <the event>}`.
    Webhook(WebhookPush),
}

/// An event the webhook function received for the account `pushed_to` (a name in the accounts
/// table) and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPush {
    pub pushed_to: String,
    pub event: Event,
}

impl PushMessage {
    pub fn event(&self) -> &Event {
        match self {
            PushMessage::Bus(d) => &d.event,
            PushMessage::Webhook(w) => &w.event,
        }
    }
}

/// What a queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Slice(SliceMessage),
    Export(ExportMessage),
    Tick(TickMessage),
    Push(PushMessage),
}

impl Message {
    /// Parses a message body: a pushed event when it is an EventBridge envelope (`detail-type`) or
    /// has `pushed_to`, an export when it has `export_tick`, the rest of a tick when it has
    /// `resume_tick`, else a slice. The error never quotes the body.
    pub fn parse(body: &str) -> Result<Message, String> {
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        if value.get("detail-type").is_some() {
            return push::eventbridge_event(body.as_bytes())
                .map(|d| Message::Push(PushMessage::Bus(d)))
                .map_err(|e| e.to_string());
        }
        let parsed = if value.get("pushed_to").is_some() {
            serde_json::from_value(value).map(|w| Message::Push(PushMessage::Webhook(w)))
        } else if value.get("export_tick").is_some() {
            serde_json::from_value(value).map(Message::Export)
        } else if value.get("resume_tick").is_some() {
            serde_json::from_value(value).map(Message::Tick)
        } else {
            serde_json::from_value(value).map(Message::Slice)
        };
        parsed.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_messages_parse() {
        for (file, continuation) in [("slice.json", 0), ("continuation.json", 1)] {
            let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
            let sqs: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let body = sqs["Records"][0]["body"].as_str().unwrap();
            let m: SliceMessage = serde_json::from_str(body).unwrap();
            assert_eq!(m.continuation, continuation, "{file}");
            assert_eq!(
                m.work,
                SliceWork::List {
                    dataset: "charges".into()
                }
            );
        }
    }

    #[test]
    fn exports_and_slices_are_told_apart() {
        let export = serde_json::to_string(&ExportMessage::new(1_700_000_000)).unwrap();
        assert_eq!(
            Message::parse(&export).unwrap(),
            Message::Export(ExportMessage {
                id: "export@1700000000".into(),
                export_tick: 1_700_000_000
            })
        );
        let slice = serde_json::to_string(&SliceMessage::new("acme", SliceWork::Feed, 1)).unwrap();
        assert!(matches!(Message::parse(&slice).unwrap(), Message::Slice(_)));
        let resume = Resume {
            account: "acme".into(),
            after_connected: Some("acct_9".into()),
        };
        let tick = TickMessage::new(60, resume);
        let body = serde_json::to_string(&tick).unwrap();
        assert_eq!(Message::parse(&body).unwrap(), Message::Tick(tick));
        assert!(Message::parse("{\"export_tick\": \"soon\"}").is_err());
    }

    #[test]
    fn pushed_events_are_told_apart_from_the_bus_or_the_webhook_function() {
        let event = serde_json::json!({
            "id": "evt_1", "object": "event", "created": 1_700_000_000, "type": "customer.created",
            "api_version": "2023-08-16", "livemode": false,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        });
        let envelope = serde_json::json!({
            "version": "0", "id": "0b7c", "detail-type": "customer.created",
            "source": "aws.partner/stripe.com/ed_test_1", "account": "123456789012",
            "time": "2026-12-08T01:00:00Z", "region": "us-east-1", "resources": [],
            "detail": event,
        });
        let Message::Push(PushMessage::Bus(d)) = Message::parse(&envelope.to_string()).unwrap()
        else {
            panic!("not a bus delivery");
        };
        assert_eq!(
            (d.source.as_str(), d.event.id.as_str()),
            ("aws.partner/stripe.com/ed_test_1", "evt_1")
        );
        let webhook = serde_json::json!({"pushed_to": "acme", "event": event});
        let Message::Push(m) = Message::parse(&webhook.to_string()).unwrap() else {
            panic!("not a push");
        };
        assert_eq!(
            m,
            PushMessage::Webhook(WebhookPush {
                pushed_to: "acme".into(),
                event: serde_json::from_value(event).unwrap()
            })
        );
        // Another service's events on the bus are not Stripe's.
        let mut foreign = envelope.clone();
        foreign["source"] = "aws.s3".into();
        assert!(Message::parse(&foreign.to_string()).is_err());
    }

    #[test]
    fn connected_accounts_combine_into_cohorts_of_one_work() {
        let list = |d: &str| SliceWork::List { dataset: d.into() };
        let one =
            |acct: &str, work| SliceMessage::connected("p", acct, work, 7).of_merchant("acct_p");
        let messages = vec![
            SliceMessage::new("p", SliceWork::Feed, 7),
            one("acct_1", SliceWork::Feed),
            one("acct_1", list("charges")),
            one("acct_2", SliceWork::Feed),
            one("acct_3", SliceWork::Feed),
            one("acct_2", list("charges")),
        ];
        let cohorts = SliceMessage::cohorts(messages, 2);
        let ids: Vec<&str> = cohorts.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "p/_events@7",
                "p/acct_1+1/_events@7",
                "p/acct_1+1/charges@7",
                "p/acct_3/_events@7"
            ]
        );
        assert_eq!(cohorts[1].connected, ["acct_1", "acct_2"]);
        // A cohort survives the trip through SQS, and a message of one connected account from
        // before cohorts reads as a cohort of one.
        let json = serde_json::to_string(&cohorts[2]).unwrap();
        assert_eq!(
            serde_json::from_str::<SliceMessage>(&json).unwrap(),
            cohorts[2]
        );
        let old = r#"{"id":"p/acct_9/_events@7","account":"p","connected":"acct_9","kind":"feed","tick":7}"#;
        let m: SliceMessage = serde_json::from_str(old).unwrap();
        assert_eq!(m.connected, ["acct_9"]);
        // The accounts that did not finish are continued alone.
        let next = cohorts[1].continuation_of(vec!["acct_2".into()]);
        assert_eq!(
            (next.id.as_str(), next.continuation),
            ("p/acct_2/_events@7+c1", 1)
        );
    }

    #[test]
    fn ids_and_continuations() {
        let m = SliceMessage::new("acme", SliceWork::Feed, 1_700_000_000);
        assert_eq!(m.id, "acme/_events@1700000000");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["kind"], "feed");
        let c2 = m.continuation().continuation();
        assert_eq!(
            (c2.id.as_str(), c2.continuation),
            ("acme/_events@1700000000+c2", 2)
        );
    }
}
