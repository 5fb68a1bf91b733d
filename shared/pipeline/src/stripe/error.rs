//! Errors from Stripe, classified once: what the user must do, and whether a retry can help.

/// A failed Stripe request. Every variant carries Stripe's `Request-Id` when there was a response, so a
/// support ticket can name the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    #[error("the API key is invalid or revoked (HTTP 401, request {request_id}): {message}. Check the key in the configuration.")]
    InvalidKey { message: String, request_id: String },
    #[error("the key lacks a permission (HTTP 403, request {request_id}): {message}. Grant read access to this resource on the restricted key, or leave the dataset out.")]
    PermissionDenied { message: String, request_id: String },
    #[error("{message} (HTTP {status}, code resource_missing, request {request_id})")]
    ResourceMissing {
        status: u16,
        param: Option<String>,
        message: String,
        request_id: String,
    },
    /// The account does not use the Stripe product the list belongs to (Issuing, Treasury, Identity):
    /// a state of the account, not a failure ([`not_enabled_message`]).
    #[error("the account does not use this Stripe product (HTTP {status}, request {request_id}): {message}")]
    NotEnabled {
        status: u16,
        message: String,
        request_id: String,
    },
    #[error("Stripe rejected the request (HTTP {status}{}, request {request_id}): {message}", code.as_ref().map(|c| format!(", code {c}")).unwrap_or_default())]
    InvalidRequest {
        status: u16,
        code: Option<String>,
        message: String,
        request_id: String,
    },
    #[error("rate limited by Stripe after {attempts} attempts (HTTP 429 {reason}, request {request_id}); lower rate_budget or concurrency if this persists")]
    RateLimited {
        reason: String,
        attempts: u32,
        request_id: String,
    },
    #[error(
        "Stripe failed after {attempts} attempts (HTTP {status}, request {request_id}): {message}"
    )]
    Server {
        status: u16,
        attempts: u32,
        message: String,
        request_id: String,
    },
    #[error("network error talking to {base} after {attempts} attempts: {message}")]
    Network {
        base: String,
        attempts: u32,
        message: String,
    },
    #[error("unexpected response from Stripe (request {request_id}): {message}")]
    Decode { message: String, request_id: String },
}

impl StripeError {
    pub fn request_id(&self) -> Option<&str> {
        match self {
            StripeError::Network { .. } => None,
            StripeError::InvalidKey { request_id, .. }
            | StripeError::PermissionDenied { request_id, .. }
            | StripeError::ResourceMissing { request_id, .. }
            | StripeError::InvalidRequest { request_id, .. }
            | StripeError::NotEnabled { request_id, .. }
            | StripeError::RateLimited { request_id, .. }
            | StripeError::Server { request_id, .. }
            | StripeError::Decode { request_id, .. } => Some(request_id),
        }
    }

    /// A 429 for the request rate (not a lock timeout on one object, which Stripe also answers with
    /// 429): the client should slow down.
    pub fn is_over_rate(&self) -> bool {
        matches!(self, StripeError::RateLimited { reason, .. } if reason != "lock_timeout")
    }

    /// A `starting_after` cursor that names an object Stripe no longer lists.
    pub fn is_missing_cursor(&self) -> bool {
        matches!(self, StripeError::ResourceMissing { param: Some(p), .. } if p == "starting_after" || p == "ending_before")
    }
}

/// Whether a 400's message says the account has not been onboarded to the product the request belongs
/// to. Stripe gives these no error code; the wording is what Stripe's own sync engine and other
/// open-source extractors match on: Issuing and Identity ("Your account is not set up to use Issuing.
/// Please visit …"), Treasury ("Unrecognized request URL (GET: /v1/treasury/financial_accounts). …
/// (Hint: Have you onboarded to Treasury? …)"), and APIs not offered in test mode ("This API surface is
/// not enabled for testmode usage.").
pub fn not_enabled_message(message: &str) -> bool {
    const PATTERNS: [&str; 3] = [
        "is not set up to use ",
        "Have you onboarded to ",
        "API surface is not enabled",
    ];
    PATTERNS.iter().any(|p| message.contains(p))
}

/// What an attempt came to, with the retry decision made where the response was read: the outcome of
/// `classify` (`T` the body) and of every [`super::StripeApi`] (`T` a [`super::Response`]).
#[derive(Debug)]
pub enum Attempt<T = bytes::Bytes> {
    /// A 200 whose body is complete JSON.
    Ok(T),
    /// Worth retrying (network error, 409, 429, 5xx, or `Stripe-Should-Retry: true`).
    Retry(StripeError),
    /// Final (other 4xx, or `Stripe-Should-Retry: false`).
    Fail(StripeError),
}

impl<T> Attempt<T> {
    /// The response, or the error whether or not a retry could help.
    pub fn into_result(self) -> Result<T, StripeError> {
        match self {
            Attempt::Ok(t) => Ok(t),
            Attempt::Retry(e) | Attempt::Fail(e) => Err(e),
        }
    }
}

/// Classifies a response. The retry whitelist lives here and only here.
pub fn classify(
    status: u16,
    should_retry: Option<bool>,
    rate_reason: Option<String>,
    request_id: String,
    body: bytes::Bytes,
    attempts: u32,
) -> Attempt {
    if status == 200 {
        // Checked without building a tree: a cut-off body on a 200 is a transport failure, retried.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            Ok(_) => Attempt::Ok(body),
            Err(e) => Attempt::Retry(StripeError::Decode {
                message: format!("invalid JSON ({e})"),
                request_id,
            }),
        };
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let err = &json["error"];
    let message = err["message"]
        .as_str()
        .unwrap_or("no error message")
        .to_string();
    let code = err["code"].as_str().map(str::to_string);
    let error = match status {
        401 => StripeError::InvalidKey {
            message,
            request_id,
        },
        403 => StripeError::PermissionDenied {
            message,
            request_id,
        },
        429 => StripeError::RateLimited {
            reason: rate_reason
                .or_else(|| code.clone())
                .unwrap_or_else(|| "rate_limit".into()),
            attempts,
            request_id,
        },
        500..=599 => StripeError::Server {
            status,
            attempts,
            message,
            request_id,
        },
        400 if code.is_none() && not_enabled_message(&message) => StripeError::NotEnabled {
            status,
            message,
            request_id,
        },
        _ if code.as_deref() == Some("resource_missing") => StripeError::ResourceMissing {
            status,
            param: err["param"].as_str().map(str::to_string),
            message,
            request_id,
        },
        _ => StripeError::InvalidRequest {
            status,
            code,
            message,
            request_id,
        },
    };
    let retryable = match should_retry {
        Some(flag) => flag,
        None => matches!(status, 409 | 429 | 500..=599),
    };
    if retryable {
        Attempt::Retry(error)
    } else {
        Attempt::Fail(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> bytes::Bytes {
        serde_json::to_vec(&serde_json::json!({"error": {"message": "m", "code": code, "param": "starting_after"}})).unwrap().into()
    }

    #[test]
    fn retry_whitelist() {
        assert!(matches!(
            classify(
                429,
                None,
                Some("global-rate".into()),
                "r".into(),
                body("rate_limit"),
                1
            ),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(503, None, None, "r".into(), bytes::Bytes::new(), 1),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(409, None, None, "r".into(), bytes::Bytes::new(), 1),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            classify(400, None, None, "r".into(), body("parameter_unknown"), 1),
            Attempt::Fail(_)
        ));
        assert!(matches!(
            classify(401, None, None, "r".into(), bytes::Bytes::new(), 1),
            Attempt::Fail(StripeError::InvalidKey { .. })
        ));
        // An account without the product: its own kind of answer, not retried.
        let gated = |message: &str| -> bytes::Bytes {
            serde_json::to_vec(&serde_json::json!({"error": {"message": message, "type": "invalid_request_error"}})).unwrap().into()
        };
        assert!(matches!(
            classify(400, None, None, "r".into(), gated("Your account is not set up to use Issuing. Please visit https://dashboard.stripe.com/issuing/overview to get started."), 1),
            Attempt::Fail(StripeError::NotEnabled { .. })
        ));
        assert!(matches!(
            classify(400, None, None, "r".into(), gated("Unrecognized request URL (GET: /v1/treasury/financial_accounts). Please see https://stripe.com/docs or we can help at https://support.stripe.com/. (Hint: Have you onboarded to Treasury? You can learn more about the steps needed at https://stripe.com/docs/treasury/access)"), 1),
            Attempt::Fail(StripeError::NotEnabled { .. })
        ));
        assert!(matches!(
            classify(
                400,
                None,
                None,
                "r".into(),
                gated("Unrecognized request URL (GET: /v1/nope)."),
                1
            ),
            Attempt::Fail(StripeError::InvalidRequest { .. })
        ));
        // Stripe-Should-Retry overrides the status.
        assert!(matches!(
            classify(500, Some(false), None, "r".into(), bytes::Bytes::new(), 1),
            Attempt::Fail(_)
        ));
        assert!(matches!(
            classify(400, Some(true), None, "r".into(), bytes::Bytes::new(), 1),
            Attempt::Retry(_)
        ));
        // A truncated 200 is retried.
        assert!(matches!(
            classify(
                200,
                None,
                None,
                "r".into(),
                bytes::Bytes::from_static(b"{\"obj"),
                1
            ),
            Attempt::Retry(_)
        ));
    }

    #[test]
    fn missing_cursor_is_recognised_and_messages_carry_request_ids() {
        match classify(400, None, None, "req_9".into(), body("resource_missing"), 1) {
            Attempt::Fail(e) => {
                assert!(e.is_missing_cursor());
                assert!(e.to_string().contains("req_9"));
            }
            other => panic!("{other:?}"),
        }
    }
}
