//! The one error type of the client-facing API (`/v1/*`, `/admin/api/*`, `/metrics`), and the
//! one place it becomes an HTTP response.
//!
//! An [`ApiError`] is a [`Kind`] — a closed list of everything that can go wrong for a client,
//! each knowing its status, its usage-log code, its default message and whose [`Fault`] it is
//! (the client's → 4xx; the upstream's → 502/504; the gateway's own → 500/503, whose details
//! only reach the log) — plus what the call site knows: a more precise message, the offending
//! parameter, a `Retry-After`. It renders in the shape of the endpoint it happened on:
//! OpenAI's `{"error":{"message","type","param","code"}}` on `/v1/*` and the admin API,
//! Anthropic's `{"type":"error","error":{"type","message"}}` on `/v1/messages`.
//!
//! An upstream's own 4xx/5xx answer is not an `ApiError`: it is relayed with its body.

use std::borrow::Cow;

use serde_json::json;

use crate::http::{HttpError, Response};

/// Which API family's error shape a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    pub fn of_path(path: &str) -> Dialect {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was wrong, or its sender is limited: a 4xx; retrying unchanged fails
    /// again unless a `Retry-After` says when it may not.
    Client,
    /// The upstream could not be reached or gave an unusable answer: 502 or 504.
    Upstream,
    /// The gateway itself: a bug (500, details in the log only) or out of capacity (503).
    Gateway,
}

/// Every way a request can fail, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidRequest,
    MissingKey,
    InvalidKey,
    KeyDisabled,
    KeyExpired,
    IpNotAllowed,
    ModelNotAllowed,
    NotAdmin,
    /// A state-changing admin request that did not come from our own page (CSRF).
    CrossSite,
    HostNotAllowed,
    NotFound,
    ModelNotFound,
    /// `count_tokens` for a target that cannot count (clients then estimate locally).
    CountTokensUnsupported,
    MethodNotAllowed,
    /// The thing to create exists already (a key name).
    Conflict,
    /// The client stopped sending its head or body.
    RequestTimeout,
    TooLarge,
    HeadersTooLarge,
    ExpectationFailed,
    RateLimited,
    /// The key spent its budget for the current period: retrying before it ends is useless.
    BudgetExceeded,
    LockedOut,
    TooManyConnections,
    UpstreamUnreachable,
    UpstreamUnreadable,
    /// The upstream's stream ended without its end marker.
    UpstreamTruncated,
    UpstreamTooLarge,
    UpstreamTimeout,
    /// `max_buffered_bytes` is reached: retry shortly.
    Overloaded,
    /// Every connection slot is taken: retry shortly.
    Busy,
    /// `[cluster] on_redis_error = "closed"` and Redis cannot be reached.
    ClusterUnavailable,
    Internal,
}

impl Kind {
    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidRequest => 400,
            Kind::MissingKey | Kind::InvalidKey => 401,
            Kind::KeyDisabled
            | Kind::KeyExpired
            | Kind::IpNotAllowed
            | Kind::ModelNotAllowed
            | Kind::NotAdmin
            | Kind::CrossSite
            | Kind::HostNotAllowed => 403,
            Kind::NotFound | Kind::ModelNotFound | Kind::CountTokensUnsupported => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::RequestTimeout => 408,
            Kind::TooLarge => 413,
            Kind::ExpectationFailed => 417,
            Kind::RateLimited
            | Kind::BudgetExceeded
            | Kind::LockedOut
            | Kind::TooManyConnections => 429,
            Kind::HeadersTooLarge => 431,
            Kind::Internal => 500,
            Kind::UpstreamUnreachable
            | Kind::UpstreamUnreadable
            | Kind::UpstreamTruncated
            | Kind::UpstreamTooLarge => 502,
            Kind::Overloaded | Kind::Busy | Kind::ClusterUnavailable => 503,
            Kind::UpstreamTimeout => 504,
        }
    }

    /// The short machine code: the error's `code` and the usage log's `error` field.
    pub fn code(self) -> &'static str {
        match self {
            Kind::InvalidRequest | Kind::ExpectationFailed => "invalid_request",
            Kind::MissingKey => "missing_api_key",
            Kind::InvalidKey => "invalid_api_key",
            Kind::KeyDisabled => "key_disabled",
            Kind::KeyExpired => "key_expired",
            Kind::IpNotAllowed => "ip_not_allowed",
            Kind::ModelNotAllowed => "model_not_allowed",
            Kind::NotAdmin => "not_admin",
            Kind::CrossSite => "cross_site_request",
            Kind::HostNotAllowed => "host_not_allowed",
            Kind::NotFound => "not_found",
            Kind::ModelNotFound => "model_not_found",
            Kind::CountTokensUnsupported => "count_tokens_unsupported",
            Kind::MethodNotAllowed => "method_not_allowed",
            Kind::Conflict => "conflict",
            Kind::RequestTimeout => "request_timeout",
            Kind::TooLarge => "request_too_large",
            Kind::HeadersTooLarge => "headers_too_large",
            Kind::RateLimited => "rate_limited",
            Kind::BudgetExceeded => "budget_exceeded",
            Kind::LockedOut => "locked_out",
            Kind::TooManyConnections => "too_many_connections",
            Kind::UpstreamUnreachable => "upstream_unreachable",
            Kind::UpstreamUnreadable => "upstream_unreadable",
            Kind::UpstreamTruncated => "upstream_truncated",
            Kind::UpstreamTooLarge => "upstream_too_large",
            Kind::UpstreamTimeout => "upstream_timeout",
            Kind::Overloaded => "server_overloaded",
            Kind::Busy => "server_busy",
            Kind::ClusterUnavailable => "cluster_unavailable",
            Kind::Internal => "internal_error",
        }
    }

    pub fn fault(self) -> Fault {
        match self.status() {
            500 | 503 => Fault::Gateway,
            502 | 504 => Fault::Upstream,
            _ => Fault::Client,
        }
    }

    /// What the client is told when the call site knows nothing more precise.
    fn message(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "invalid request",
            Kind::MissingKey => {
                "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`"
            }
            Kind::InvalidKey => "invalid API key",
            Kind::KeyDisabled => "this API key is disabled",
            Kind::KeyExpired => "this API key has expired",
            Kind::IpNotAllowed => "this API key may not be used from this address",
            Kind::ModelNotAllowed => "this key may not use this model",
            Kind::NotAdmin => "this key is not an admin key",
            Kind::CrossSite => {
                "cross-site request refused: use the dashboard's own page, with its CSRF token"
            }
            Kind::HostNotAllowed => "this Host is not served here",
            Kind::NotFound => "not found",
            Kind::ModelNotFound => "unknown model",
            Kind::CountTokensUnsupported => {
                "token counting is only available for anthropic targets; estimate locally"
            }
            Kind::MethodNotAllowed => "method not allowed on this path",
            Kind::Conflict => "already exists",
            Kind::RequestTimeout => "timed out reading the request body",
            Kind::TooLarge => "request body too large",
            Kind::HeadersTooLarge => "request header fields too large",
            Kind::ExpectationFailed => "unsupported Expect header",
            Kind::RateLimited => "rate limit reached for this key",
            Kind::BudgetExceeded => "this key has spent its budget for the current period",
            Kind::LockedOut => "too many failed attempts from this address; try again later",
            Kind::TooManyConnections => "too many open connections from this address",
            Kind::UpstreamUnreachable => "the upstream is unreachable",
            Kind::UpstreamUnreadable => "the upstream answer is unreadable",
            Kind::UpstreamTruncated => "the upstream stream ended early",
            Kind::UpstreamTooLarge => "the upstream answer is too large",
            Kind::UpstreamTimeout => "the upstream stopped answering",
            Kind::Overloaded => "server overloaded, try again",
            Kind::Busy => "server busy, try again",
            Kind::ClusterUnavailable => "the gateway's shared state is unreachable, try again",
            Kind::Internal => "internal error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: Kind,
    message: Cow<'static, str>,
    param: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// The error with its kind's default message (and `Retry-After: 1` for capacity limits).
    pub fn new(kind: Kind) -> ApiError {
        let retry_after = match kind {
            Kind::Overloaded | Kind::Busy | Kind::TooManyConnections => Some(1),
            Kind::ClusterUnavailable => Some(5),
            _ => None,
        };
        ApiError {
            kind,
            message: Cow::Borrowed(kind.message()),
            param: None,
            retry_after,
        }
    }

    /// The same error with a more precise message for the client (never a secret, a prompt
    /// or an internal detail).
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> ApiError {
        self.message = message.into();
        self
    }

    /// The same error, naming the request field at fault.
    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_owned());
        self
    }

    /// The same error with a `Retry-After` (never 0, which clients read as "now, in a loop").
    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>, param: Option<&str>) -> ApiError {
        let e = ApiError::new(Kind::InvalidRequest).with_message(message);
        match param {
            Some(p) => e.with_param(p),
            None => e,
        }
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(Kind::TooLarge)
            .with_message(format!("request body larger than {limit} bytes"))
    }

    pub fn rate_limited(retry_after: u64) -> ApiError {
        ApiError::new(Kind::RateLimited).with_retry_after(retry_after)
    }

    /// A key over its budget; `retry_after` = seconds until its period ends.
    pub fn budget_exceeded(retry_after: u64) -> ApiError {
        ApiError::new(Kind::BudgetExceeded).with_retry_after(retry_after)
    }

    pub fn locked_out(retry_after: u64) -> ApiError {
        ApiError::new(Kind::LockedOut).with_retry_after(retry_after)
    }

    /// An upstream failure of `kind` (one of the `Upstream*` kinds).
    pub fn upstream(kind: Kind, message: impl Into<Cow<'static, str>>) -> ApiError {
        debug_assert_eq!(kind.fault(), Fault::Upstream);
        ApiError::new(kind).with_message(message)
    }

    /// An internal failure: the client sees only this; the details go to the log by the caller.
    pub fn internal() -> ApiError {
        ApiError::new(Kind::Internal)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn fault(&self) -> Fault {
        self.kind.fault()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// OpenAI's error `type`.
    fn openai_type(&self) -> &'static str {
        match self.fault() {
            Fault::Upstream => "upstream_error",
            Fault::Gateway => "server_error",
            Fault::Client if self.kind == Kind::BudgetExceeded => "insufficient_quota",
            Fault::Client => match self.status() {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => "invalid_request_error",
            },
        }
    }

    /// Anthropic's error `type`.
    fn anthropic_type(&self) -> &'static str {
        match self.status() {
            400 | 405 | 417 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The JSON body in `dialect`'s shape.
    pub fn body(&self, dialect: Dialect) -> Vec<u8> {
        let value = match dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code(),
            }}),
            Dialect::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
        };
        value.to_string().into_bytes()
    }

    /// A final SSE event telling a streaming client the answer broke off.
    pub fn sse_event(&self, dialect: Dialect) -> Vec<u8> {
        let body = String::from_utf8_lossy(&self.body(dialect)).into_owned();
        match dialect {
            Dialect::OpenAi => format!("data: {body}\n\n").into_bytes(),
            Dialect::Anthropic => format!("event: error\ndata: {body}\n\n").into_bytes(),
        }
    }

    /// The one place an error becomes a response: status, body in `dialect`'s shape,
    /// `Retry-After`.
    pub fn response(&self, dialect: Dialect) -> Response {
        let mut response = Response::json(self.status(), self.body(dialect));
        if let Some(secs) = self.retry_after {
            response = response.with_header("retry-after", secs.to_string());
        }
        if self.kind == Kind::BudgetExceeded {
            // Both official SDKs retry a 429 unless told not to.
            response = response.with_header("x-should-retry", "false");
        }
        response
    }
}

impl From<&HttpError> for ApiError {
    /// An error the HTTP layer found (framing, limits, timeouts) in the API's terms.
    fn from(error: &HttpError) -> ApiError {
        let kind = match error {
            HttpError::BadRequest(_) => Kind::InvalidRequest,
            HttpError::PayloadTooLarge => Kind::TooLarge,
            HttpError::HeadersTooLarge => Kind::HeadersTooLarge,
            HttpError::Timeout => Kind::RequestTimeout,
            HttpError::ExpectationFailed => Kind::ExpectationFailed,
            HttpError::Busy => Kind::Busy,
            HttpError::TooManyConnections => Kind::TooManyConnections,
            HttpError::Overloaded => Kind::Overloaded,
            HttpError::Internal => Kind::Internal,
        };
        let e = ApiError::new(kind).with_message(error.message());
        match error.retry_after() {
            Some(secs) => e.with_retry_after(secs),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = ApiError::bad_request("missing `model`", Some("model"));
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "invalid_request");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "missing `model`");
    }

    #[test]
    fn dialect_by_path() {
        assert_eq!(Dialect::of_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(
            Dialect::of_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
    }

    #[test]
    fn budget_exceeded_in_both_shapes() {
        let e = ApiError::budget_exceeded(3600);
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], "budget_exceeded");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let r = e.response(Dialect::OpenAi);
        assert_eq!(r.status, 429);
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(header("retry-after").as_deref(), Some("3600"));
        assert_eq!(header("x-should-retry").as_deref(), Some("false"));
    }

    #[test]
    fn retry_after_never_zero() {
        assert_eq!(ApiError::rate_limited(0).retry_after(), Some(1));
    }

    #[test]
    fn whose_fault_gives_the_openai_type() {
        let ty = |kind| {
            let v: serde_json::Value =
                serde_json::from_slice(&ApiError::new(kind).body(Dialect::OpenAi)).unwrap();
            v["error"]["type"].as_str().unwrap().to_owned()
        };
        assert_eq!(ty(Kind::UpstreamTimeout), "upstream_error");
        assert_eq!(ty(Kind::Overloaded), "server_error");
        assert_eq!(ty(Kind::Internal), "server_error");
        assert_eq!(ty(Kind::LockedOut), "rate_limit_error");
        assert_eq!(ty(Kind::TooLarge), "invalid_request_error");
    }
}
