//! Stripe-shaped API errors: the status code and the `{"error": {...}}` body Stripe sends.

use serde_json::{json, Value};

/// An error the API answers with. Rendered exactly as Stripe renders errors, so client libraries raise
/// their usual exception types.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    /// Extra response headers (`Stripe-Should-Retry`, `Stripe-Rate-Limited-Reason`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(
        status: u16,
        kind: &'static str,
        code: Option<&'static str>,
        message: String,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            message,
            param: None,
            headers: Vec::new(),
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(code: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", code, message.into())
    }

    /// Attaches the offending parameter name.
    pub fn param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn unknown_parameter(name: &str) -> ApiError {
        ApiError::invalid(
            Some("parameter_unknown"),
            format!("Received unknown parameter: {name}"),
        )
        .param(name)
    }

    pub fn missing_parameter(name: &str) -> ApiError {
        ApiError::invalid(
            Some("parameter_missing"),
            format!("Missing required param: {name}."),
        )
        .param(name)
    }

    /// 404 for an object that does not exist.
    pub fn no_such(object: &str, id: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {object}: '{id}'"),
        )
        .param("id")
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            None,
            format!("Unrecognized request URL (GET: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            405,
            "invalid_request_error",
            None,
            format!("stripe-sim serves reads only: {method} {path} is not simulated. Change data through the /_sim/ control API."),
        )
    }

    /// 401: no key, or a key the simulator does not know.
    pub fn unauthorized(message: String) -> ApiError {
        ApiError::new(401, "invalid_request_error", None, message)
    }

    /// 403: a restricted key without the permission for this endpoint.
    pub fn forbidden(message: String) -> ApiError {
        ApiError::new(403, "invalid_request_error", None, message)
    }

    /// 429 from the per-account or per-endpoint token bucket.
    pub fn rate_limited(reason: &'static str) -> ApiError {
        ApiError::new(
            429,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.".into(),
        )
        .header("Stripe-Rate-Limited-Reason", reason)
    }

    /// 429 `lock_timeout`: another request holds the object's lock; safe to retry.
    pub fn lock_timeout() -> ApiError {
        ApiError::new(
            429,
            "invalid_request_error",
            Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.".into(),
        )
        .header("Stripe-Should-Retry", "true")
    }

    /// 5xx `api_error`.
    pub fn server(status: u16) -> ApiError {
        ApiError::new(
            status,
            "api_error",
            None,
            "An unknown error occurred while processing your request. Please try again.".into(),
        )
        .header("Stripe-Should-Retry", "true")
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut error = json!({"message": self.message, "type": self.kind});
        if let Some(code) = self.code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }
}

/// Masks a key the way Stripe does in error messages: kind prefix and the last four characters.
pub fn mask_key(key: &str) -> String {
    let prefix_len = key
        .match_indices('_')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0)
        .min(key.len());
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}{}{}", &key[..prefix_len], "*".repeat(12), tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_keep_only_prefix_and_last_four() {
        assert_eq!(mask_key("sk_test_abcdefgh1234"), "sk_test_************1234");
        assert_eq!(mask_key("x"), "************x");
    }

    #[test]
    fn body_has_stripe_shape() {
        let e = ApiError::unknown_parameter("foo");
        let b = e.body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["code"], "parameter_unknown");
        assert_eq!(b["error"]["param"], "foo");
    }
}
