//! The operators' channel contract (`stripe_pipeline_testkit::conformance::notifier`), run against
//! both channels: the SNS topic (in moto, read back through an SQS subscription) and the log (read
//! back from a captured subscriber).

mod common;

use common::{drain_queue, topic_with_inbox, Moto};
use std::io::Write;
use std::sync::{Arc, Mutex};
use stripe_pipeline::notify::LogNotifier;
use stripe_pipeline_functions::notify::SnsNotifier;
use stripe_pipeline_testkit::conformance::notifier::*;

#[tokio::test]
async fn the_sns_topic_conforms() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let (topic, inbox) = topic_with_inbox(&sdk).await;
    let sns = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), topic.clone());
    each_notification_arrives_once_and_whole(&sns, async || drain_queue(&sdk, &inbox).await).await;
    let missing = topic.replace(":alerts", ":no-such-topic");
    assert_ne!(missing, topic);
    let broken = SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), missing);
    an_unusable_channel_is_an_error_naming_it(&broken).await;
}

/// Collects what the log subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_log_conforms() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the subscriber set here sees everything the test publishes.
    let _guard = tracing::subscriber::set_default(subscriber);
    let inbox = async || {
        let text = String::from_utf8(std::mem::take(&mut *captured.0.lock().unwrap())).unwrap();
        if text.is_empty() {
            Vec::new()
        } else {
            vec![text]
        }
    };
    each_notification_arrives_once_and_whole(&LogNotifier, inbox).await;
}
