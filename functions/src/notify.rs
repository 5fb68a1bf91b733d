//! The SNS topic as the operators' channel (e-mail subscribers), behind the engine's [`Notifier`] port.

use stripe_pipeline::notify::{Notification, Notifier, NotifyError};

/// Publishes to one SNS topic; every notification is logged too.
pub struct SnsNotifier {
    sns: aws_sdk_sns::Client,
    topic: String,
}

impl SnsNotifier {
    pub fn new(sns: aws_sdk_sns::Client, topic: String) -> SnsNotifier {
        SnsNotifier { sns, topic }
    }
}

/// SNS subjects: ASCII, at most 100 characters.
fn subject(text: &str) -> String {
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    ascii.chars().take(100).collect()
}

#[async_trait::async_trait]
impl Notifier for SnsNotifier {
    fn describe(&self) -> String {
        format!("SNS topic {}", self.topic)
    }

    async fn publish(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::warn!(notification = %n.title, "{}", n.message);
        self.sns
            .publish()
            .topic_arn(&self.topic)
            .subject(subject(&format!("Stripe pipeline: {}", n.title)))
            .message(&n.message)
            .send()
            .await
            .map_err(|e| NotifyError {
                channel: self.describe(),
                message: stripe_pipeline::state::sdk_error_message(&e),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_ascii_and_short() {
        let s = subject(&format!("Zürich {}", "x".repeat(200)));
        assert!(s.starts_with("Z?rich"));
        assert_eq!(s.chars().count(), 100);
    }
}
