//! The operators' channel contract, which every [`Notifier`] adapter must pass (the SNS topic in moto
//! and the log, run by `functions/tests/notifier_conformance.rs`): each notification arrives once,
//! its message whole (several lines, non-ASCII text, a long title), and a channel that cannot deliver
//! says so, naming itself.

use stripe_pipeline::notify::{Notification, Notifier};

/// Publishes two notifications through `notifier`; `inbox` returns what arrived since the last call
/// (entries in any order, an entry may hold several messages).
pub async fn each_notification_arrives_once_and_whole(
    notifier: &dyn Notifier,
    inbox: impl AsyncFn() -> Vec<String>,
) {
    let plain = Notification {
        title: "shop charges is failing".into(),
        message: "Account 'shop', charges: failed 3 times in a row. The last error:\n\nStripe failed after 8 attempts (HTTP 500)".into(),
    };
    let long = Notification {
        title: format!("Zürich GmbH {} first full load done", "x".repeat(150)),
        message: format!(
            "Account 'Zürich GmbH': all 17 datasets are loaded.\nLine two — with a dash.\n{}",
            "y".repeat(2_000)
        ),
    };
    for n in [&plain, &long] {
        notifier
            .publish(n)
            .await
            .unwrap_or_else(|e| panic!("{} did not deliver: {e}", notifier.describe()));
    }
    let arrived = inbox().await;
    for n in [&plain, &long] {
        let times: usize = arrived.iter().map(|a| a.matches(&n.message).count()).sum();
        assert_eq!(
            times,
            1,
            "{}: {:?} arrived {times} times in {arrived:?}",
            notifier.describe(),
            n.title
        );
    }
    assert!(inbox().await.is_empty(), "nothing arrives twice");
}

/// `broken` is an adapter whose channel does not exist: publishing is an error naming the channel.
pub async fn an_unusable_channel_is_an_error_naming_it(broken: &dyn Notifier) {
    let n = Notification {
        title: "t".into(),
        message: "m".into(),
    };
    let e = broken
        .publish(&n)
        .await
        .expect_err("nothing can be delivered");
    assert_eq!(e.channel, broken.describe());
    assert!(!e.message.is_empty(), "{e}");
}
