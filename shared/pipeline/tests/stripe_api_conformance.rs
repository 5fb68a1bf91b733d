//! Every scenario of the Stripe API port's suite (`stripe_pipeline_testkit::conformance::stripe_api`),
//! once per adapter: the bare HTTPS transport and the engine's stack of layers around it.

use stripe_pipeline_testkit::conformance::stripe_api::*;

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod transport {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Adapter::Transport).await })*
        }
        mod stack {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Adapter::Stack).await })*
        }
    };
}

conformance!(
    answers_carry_the_request_id_and_stripes_clock,
    final_errors_are_not_retried_and_never_show_the_key,
    transient_faults_are_retried_or_handed_up_as_retryable,
    stripe_account_reaches_a_connected_account,
);
