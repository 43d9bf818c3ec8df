//! The one error type of the client-facing API, and the one place it becomes an HTTP response.
//!
//! Every variant knows whose fault it is (client → 4xx, upstream → 502/504, internal → a plain
//! 500 whose details only reach the log) and renders in the shape of the endpoint it happened
//! on: OpenAI's `{"error":{"message","type","param","code"}}` on `/v1/*`, Anthropic's
//! `{"type":"error","error":{"type","message"}}` on `/v1/messages`.

use serde_json::json;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    /// A short machine code, also the usage log's `error` field.
    pub code: &'static str,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            param: param.map(str::to_owned),
            ..ApiError::new(400, "invalid_request", message)
        }
    }

    pub fn missing_key() -> ApiError {
        ApiError::new(
            401,
            "missing_api_key",
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        )
    }

    pub fn unknown_key() -> ApiError {
        ApiError::new(401, "invalid_api_key", "invalid API key")
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(403, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "method_not_allowed", "method not allowed on this path")
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            413,
            "request_too_large",
            format!("request body larger than {limit} bytes"),
        )
    }

    /// The client stopped sending its body.
    pub fn body_timeout() -> ApiError {
        ApiError::new(408, "request_timeout", "timed out reading the request body")
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(429, "rate_limited", message)
        }
    }

    pub fn locked_out(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(
                429,
                "locked_out",
                "too many failed attempts from this address; try again later",
            )
        }
    }

    pub fn upstream(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(status, code, message)
    }

    /// The gateway holds as much request memory as `max_buffered_bytes` allows: 503, retry.
    pub fn overloaded() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(503, "server_overloaded", "server overloaded, try again")
        }
    }

    /// An internal failure: the client sees only this; the details go to the log by the caller.
    pub fn internal() -> ApiError {
        ApiError::new(500, "internal_error", "internal error")
    }

    /// OpenAI's error `type` for this status.
    fn openai_type(&self) -> &'static str {
        match self.status {
            400 | 404 | 405 | 408 | 413 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            // 503 is only ever ours (an upstream's own 503 is relayed with its body).
            502 | 504 => "upstream_error",
            _ => "server_error",
        }
    }

    /// Anthropic's error `type` for this status.
    fn anthropic_type(&self) -> &'static str {
        match self.status {
            400 | 405 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
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
                "code": self.code,
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
    fn retry_after_never_zero() {
        assert_eq!(ApiError::rate_limited("x", 0).retry_after, Some(1));
    }
}
