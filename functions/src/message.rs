//! The SQS messages: a slice (which account, which work, which scheduler tick planned it, and how many
//! continuations came before: a list that reached a function's deadline is sent again to finish), or an
//! export in Stripe's layout of the whole lake.

use serde::{Deserialize, Serialize};
use stripe_pipeline::engine::SliceWork;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceMessage {
    /// `<account>/<_events or dataset>@<tick>`, plus `+c<n>` for a continuation: the same tick never
    /// plans the same slice twice.
    pub id: String,
    /// The account's `name` in the accounts table.
    pub account: String,
    /// A connected account of that account (a Connect platform): the slice is this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<String>,
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
            connected: None,
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
            connected: Some(connected.to_string()),
            ..SliceMessage::new(account, work, tick)
        }
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

/// What a queue message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Slice(SliceMessage),
    Export(ExportMessage),
}

impl Message {
    /// Parses a message body: an export when it has `export_tick`, else a slice.
    pub fn parse(body: &str) -> Result<Message, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(body)?;
        if value.get("export_tick").is_some() {
            serde_json::from_value(value).map(Message::Export)
        } else {
            serde_json::from_value(value).map(Message::Slice)
        }
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
        assert!(Message::parse("{\"export_tick\": \"soon\"}").is_err());
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
