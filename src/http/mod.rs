//! Our own small HTTP/1.1 server layer (see PRODUCT.md for why not tiny_http). Knows nothing
//! about LLMs: a [`Handler`] gets a parsed [`Request`] and returns a [`Response`] with a fixed
//! body or a stream.
//!
//! Shape: one accept thread ([`server`]), a bounded pool of reusable connection threads (one
//! thread serves one connection for its life, [`conn`]), strict framing ([`head`], [`body`]),
//! every read and write under a timeout, optional rustls termination ([`tls`]).
//!
//! Each open connection uses two descriptors (its socket and a clone kept so shutdown can
//! close it while idle); `Server::bind` raises the soft open-file limit to the hard one.
//!
//! State owned here: only the option and error types; see each submodule.

pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod head;
mod request;
mod response;
mod server;
mod tls;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use body::BodyError;
pub use request::{Request, Version};
pub(crate) use response::Hex;
pub use response::{Body, Response, StreamFn, StreamWriter};
pub use server::{RunningServer, Server, ShutdownHandle};
pub use tls::{TlsError, tls_config};

/// Limits and timeouts of the server. `Default` gives safe values.
#[derive(Clone)]
pub struct ServerOptions {
    /// Open client connections served at once (one thread each); more get a fast 503.
    pub max_connections: usize,
    /// The whole request head (and a TLS handshake) must arrive within this.
    pub header_timeout: Duration,
    /// A keep-alive connection with no new request is closed after this.
    pub idle_timeout: Duration,
    /// Bodies longer than this are refused with 413 as soon as that is known.
    pub max_body_bytes: u64,
    /// A write the client does not take within this fails (the connection closes).
    pub write_timeout: Duration,
    /// Longest wait for the next body bytes.
    pub body_read_timeout: Duration,
    /// The whole body must arrive within this (from the handler's first read).
    pub body_total_timeout: Duration,
    /// Request heads longer than this get 431.
    pub max_head_bytes: usize,
    /// Requests with more header lines than this (capped at 256) get 431.
    pub max_headers: usize,
    /// At shutdown, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Stack size of connection threads (handlers run on them). Parsing serde_json's deepest
    /// accepted document (depth 127) needs about 256 KiB in a debug build; untouched stack
    /// pages cost no memory, so the default leaves room for the handler's own work.
    pub thread_stack_bytes: usize,
    /// TLS termination (see [`tls_config`]); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            body_total_timeout: Duration::from_secs(300),
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            shutdown_grace: Duration::from_secs(30),
            thread_stack_bytes: 1024 * 1024,
            tls: None,
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// An error the layer detects and answers itself, before or instead of the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Bad framing or a malformed head (400); the reason is safe to show.
    BadRequest(&'static str),
    /// The declared or received body exceeds `max_body_bytes` (413).
    PayloadTooLarge,
    /// The head exceeds `max_head_bytes` or `max_headers` (431).
    HeadersTooLarge,
    /// The head did not arrive within `header_timeout` (408).
    Timeout,
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
    /// Every connection slot is taken (503).
    Busy,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::PayloadTooLarge => 413,
            HttpError::HeadersTooLarge => 431,
            HttpError::Timeout => 408,
            HttpError::ExpectationFailed => 417,
            HttpError::Busy => 503,
        }
    }

    /// A short message for the client.
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::BadRequest(why) => why,
            HttpError::PayloadTooLarge => "request body too large",
            HttpError::HeadersTooLarge => "request header fields too large",
            HttpError::Timeout => "timed out waiting for the request",
            HttpError::ExpectationFailed => "unsupported Expect header",
            HttpError::Busy => "server busy, try again",
        }
    }

    /// The OpenAI-style error type word for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Busy => "server_error",
            HttpError::Timeout => "timeout",
            _ => "invalid_request_error",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for HttpError {}

/// The application: turns a request into a response. Runs on connection threads.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: &mut Request<'_>) -> Response;

    /// Renders an error the layer detected itself (`path` is known once a head was parsed).
    /// The connection is closed after it. Default: OpenAI-style JSON.
    fn error_response(&self, path: Option<&str>, error: &HttpError) -> Response {
        let _ = path;
        let body = serde_json::json!({"error": {
            "message": error.message(), "type": error.kind(), "param": null, "code": null,
        }});
        Response::json(error.status(), body.to_string())
    }
}

impl<F> Handler for F
where
    F: Fn(&mut Request<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &mut Request<'_>) -> Response {
        self(req)
    }
}
