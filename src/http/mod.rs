//! Our own small HTTP/1.1 server layer (see PRODUCT.md for why not tiny_http). Knows nothing
//! about LLMs: a [`Handler`] gets a parsed [`Request`] and returns a [`Response`] with a fixed
//! body or a stream.
//!
//! Shape: one accept thread ([`server`]), a bounded pool of reusable connection threads (one
//! thread serves one connection for its life, [`conn`]), strict framing ([`head`], [`body`]),
//! every read and write under a timeout, optional rustls termination ([`tls`]).
//!
//! Shared resources are bounded so one client cannot take them from the rest: connection
//! slots per client address (`peers`), request-body memory across all connections
//! (`budget`), and the time a refused request's unread body may hold its thread (`conn`).
//!
//! Each open connection uses two descriptors (its socket and a clone kept so shutdown can
//! close it while idle); `Server::bind` raises the soft open-file limit to the hard one.
//!
//! State owned here: only the option and error types; see each submodule.

pub(crate) mod body;
pub(crate) mod budget;
pub(crate) mod conn;
pub(crate) mod head;
mod peers;
mod request;
mod response;
mod server;
mod tls;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

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
    /// Request-body bytes (and handlers' reserved working memory, see
    /// [`Request::reserve_extra`]) held at once across all connections; past it, 503.
    pub max_buffered_bytes: u64,
    /// Open connections per client address (IPv6: per /64); more get a fast 429. `None`: no
    /// cap. Connections from `trusted_proxies` are not counted.
    pub max_connections_per_ip: Option<usize>,
    /// Reverse proxies in front of us: every connection of theirs is many clients', so the
    /// per-address cap does not apply to them.
    pub trusted_proxies: Vec<IpNet>,
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
            max_body_bytes: 64 * 1024 * 1024,
            max_buffered_bytes: 1024 * 1024 * 1024,
            max_connections_per_ip: Some(64),
            trusted_proxies: Vec::new(),
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
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
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
    /// Every connection slot is taken (503, `Retry-After`).
    Busy,
    /// The client's address has `max_connections_per_ip` connections open already (429,
    /// `Retry-After`): a per-client limit, so the client's fault, like a rate limit.
    TooManyConnections,
    /// Taking this body (or a handler's working memory) would pass `max_buffered_bytes`
    /// (503, `Retry-After`): the server as a whole is short of memory, not this client.
    Overloaded,
    /// The handler panicked (500); the connection is closed after the answer.
    Internal,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::PayloadTooLarge => 413,
            HttpError::HeadersTooLarge => 431,
            HttpError::Timeout => 408,
            HttpError::ExpectationFailed => 417,
            HttpError::Busy | HttpError::Overloaded => 503,
            HttpError::TooManyConnections => 429,
            HttpError::Internal => 500,
        }
    }

    /// Seconds after which a retry may succeed, for the `Retry-After` header; `None` when
    /// the same request will fail again. The layer adds the header to its error responses
    /// when the handler's rendering has none.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            HttpError::Busy | HttpError::TooManyConnections | HttpError::Overloaded => Some(1),
            _ => None,
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
            HttpError::TooManyConnections => "too many open connections from this address",
            HttpError::Overloaded => "server overloaded, try again",
            HttpError::Internal => "internal error",
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
    /// The connection is closed after it; the layer adds `Retry-After` from
    /// [`HttpError::retry_after`] if the response has none. Default: `{"error":"<message>"}`,
    /// no API's wording; an application renders errors in its own shape.
    fn error_response(&self, path: Option<&str>, error: &HttpError) -> Response {
        let _ = path;
        let body = serde_json::json!({ "error": error.message() });
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
