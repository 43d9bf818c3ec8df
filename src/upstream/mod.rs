//! Upstream providers: the wire protocol behind one trait.
//!
//! Routing, limits and usage live in front of [`Provider`]; behind it, each kind knows its own
//! URL layout and authentication (`remote.rs` for OpenAI-compatible and Anthropic APIs over one
//! shared rustls stack, `mock.rs` for the built-in echo provider). The gateway builds one
//! [`Upstreams`] per loaded config and drops it with that config, so a reload that changes a
//! provider also replaces its connection pool.

pub mod mock;
pub mod remote;
mod resolve;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use crate::config::Config;
use crate::config::model::ProviderKind;

/// What the gateway asks of an upstream. The body is already in the provider's wire format.
pub struct UpstreamRequest<'a> {
    pub method: Method,
    /// Appended to the provider's `base_url`, e.g. `/chat/completions` or `/v1/messages`: one
    /// of a few fixed paths (an HTTP provider keeps each one's parsed URL).
    pub path: &'static str,
    /// Client headers to forward (already filtered by the gateway).
    pub headers: &'a [(&'static str, &'a str)],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// An upstream's answer: its status, the headers worth relaying, and a body read lazily so a
/// stream can be relayed as it arrives (dropping it closes the upstream connection).
pub struct UpstreamResponse {
    pub status: u16,
    /// Lower-case names; only `content-type`, `retry-after` and the upstream's own ids and
    /// rate-limit headers are kept (never framing or hop-by-hop headers).
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send>,
}

impl UpstreamResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is a Server-Sent Events stream.
    pub fn is_event_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
    }
}

/// Why an upstream exchange failed before a status arrived. Always the upstream's fault (or
/// the network's); the gateway turns it into 502 or 504.
#[derive(Debug)]
pub enum UpstreamError {
    /// DNS, connect, TLS or a broken connection: 502.
    Unreachable(String),
    /// No answer (or no next byte) in time: 504.
    Timeout(String),
    /// An answer that is not HTTP or not readable: 502.
    Unreadable(String),
}

impl UpstreamError {
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Timeout(_) => 504,
            UpstreamError::Unreachable(_) | UpstreamError::Unreadable(_) => 502,
        }
    }

    /// A short code for the usage log's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable(_) => "upstream_unreachable",
            UpstreamError::Timeout(_) => "upstream_timeout",
            UpstreamError::Unreadable(_) => "upstream_unreadable",
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Unreachable(why) => write!(f, "upstream unreachable: {why}"),
            UpstreamError::Timeout(why) => write!(f, "upstream timed out: {why}"),
            UpstreamError::Unreadable(why) => write!(f, "upstream reply unreadable: {why}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// One upstream. Implementations add their own credentials and static headers.
pub trait Provider: Send + Sync {
    fn send(&self, request: &UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError>;
}

/// Why a provider's client could not be built (only its `ca_file` can be wrong by then).
#[derive(Debug)]
pub enum SetupError {
    CaFileUnreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    CaFileInvalid {
        path: std::path::PathBuf,
        reason: String,
    },
    CaFileEmpty {
        path: std::path::PathBuf,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::CaFileUnreadable { path, source } => {
                write!(f, "cannot read ca_file {}: {source}", path.display())
            }
            SetupError::CaFileInvalid { path, reason } => {
                write!(f, "ca_file {} is not valid PEM: {reason}", path.display())
            }
            SetupError::CaFileEmpty { path } => {
                write!(f, "ca_file {} holds no certificate", path.display())
            }
        }
    }
}

impl std::error::Error for SetupError {}

/// The providers of one loaded config, by name.
pub struct Upstreams {
    by_name: HashMap<String, Arc<dyn Provider>>,
}

impl Upstreams {
    /// Builds a client for every provider. Fails only on an unreadable `ca_file`.
    pub fn new(config: &Config) -> Result<Upstreams, SetupError> {
        let mut by_name: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        for provider in &config.providers {
            let client: Arc<dyn Provider> = match provider.kind {
                ProviderKind::Mock => Arc::new(mock::Mock),
                ProviderKind::OpenAi | ProviderKind::Anthropic => {
                    Arc::new(remote::Remote::new(provider.clone(), &config.server)?)
                }
            };
            by_name.insert(provider.name.clone(), client);
        }
        Ok(Upstreams { by_name })
    }

    pub fn get(&self, provider: &str) -> Option<&Arc<dyn Provider>> {
        self.by_name.get(provider)
    }
}
