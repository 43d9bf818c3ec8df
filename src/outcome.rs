//! The one record of a proxied request: filled in by the gateway as the request goes, then
//! handed, finished, to everything that keeps an account of it — the usage log (whose line is
//! its serialised form), the metrics, the dashboard's analytics and the access log line. No
//! consumer gets a copy of its fields in a shape of its own.
//!
//! Owns no shared state; one `Outcome` lives as long as its request (a stream's until its last
//! byte).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::clock::Stamp;
use crate::config::model::{Key, ProviderSettings};
use crate::cost::{Pricing, Usd};
use crate::translate::{Endpoint, Usage};

/// Where the time of a request that reached an upstream went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The gateway's own time: everything but waiting for the upstream.
    pub gateway: Duration,
    /// From sending to the upstream until its answer's head (a whole body: until read).
    pub upstream: Duration,
}

/// One proxied request, as recorded.
#[derive(Debug)]
pub struct Outcome {
    pub request_id: String,
    pub client_ip: IpAddr,
    pub started: Instant,
    pub endpoint: Endpoint,
    /// The key, once it authenticated.
    pub key: Option<Arc<Key>>,
    /// The model the client asked for.
    pub model: Option<String>,
    /// The model is a `[[models]]` name (not a client-made `provider/model`).
    pub model_configured: bool,
    /// The provider whose answer the client got, and the model name it was sent.
    pub provider: Option<Arc<ProviderSettings>>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    /// `None` on success; a short code (the usage log's `error`) otherwise.
    pub error: Option<&'static str>,
    pub usage: Option<Usage>,
    /// How the target that answered is priced.
    pub pricing: Option<Pricing>,
    /// What the answer cost; `None` when unknown (no usage, or no price for the model).
    pub cost: Option<Usd>,
    /// Time to the first byte of the body sent to the client.
    pub ttfb: Option<Duration>,
    pub timing: Option<Timing>,
    /// When the request ended; set by [`Outcome::end`].
    pub ended: Option<Ended>,
}

/// When a request ended, and how long it took.
#[derive(Debug)]
pub struct Ended {
    pub at: Stamp,
    pub latency: Duration,
}

impl Outcome {
    /// A request with nothing known yet but who asked, when, and where.
    pub fn new(
        request_id: String,
        client_ip: IpAddr,
        started: Instant,
        endpoint: Endpoint,
    ) -> Self {
        Outcome {
            request_id,
            client_ip,
            started,
            endpoint,
            key: None,
            model: None,
            model_configured: false,
            provider: None,
            upstream_model: None,
            stream: false,
            status: 0,
            error: None,
            usage: None,
            pricing: None,
            cost: None,
            ttfb: None,
            timing: None,
            ended: None,
        }
    }

    /// Stamps the end of the request (now).
    pub fn end(&mut self) {
        self.ended = Some(Ended {
            at: Stamp::now(),
            latency: self.started.elapsed(),
        });
    }

    /// The whole time from the request's head to its last byte (so far, until it ended).
    pub fn latency(&self) -> Duration {
        self.ended
            .as_ref()
            .map_or_else(|| self.started.elapsed(), |e| e.latency)
    }

    /// Time to first byte, never more than the latency.
    pub fn ttfb(&self) -> Duration {
        let latency = self.latency();
        self.ttfb.unwrap_or(latency).min(latency)
    }

    /// Unix seconds of the end (now, if it has not ended).
    pub fn ended_unix_secs(&self) -> i64 {
        self.ended
            .as_ref()
            .map_or_else(|| Stamp::now().unix_secs(), |e| e.at.unix_secs())
    }

    pub fn key_name(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.name.as_str())
    }

    /// (prompt, completion) tokens, 0 when unknown.
    pub fn tokens(&self) -> (u64, u64) {
        self.usage
            .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens))
    }

    /// Whether the dashboard may name this request's model: a `[[models]]` entry, or a
    /// `provider/model` name an upstream answered with success. Anything else a client typed
    /// is counted as one "other" row, so a key holder cannot fill the tables with names.
    pub fn model_is_nameable(&self) -> bool {
        self.model_configured || (self.provider.is_some() && (200..300).contains(&self.status))
    }
}

/// The usage log line: `{"ts","request_id","key","model","provider","upstream_model",
/// "endpoint","stream","status","latency_ms","ttfb_ms","prompt_tokens","completion_tokens",
/// "cache_read_tokens","cache_write_tokens","cost_usd","error","client_ip"}` (the contract's
/// names and order). Token counts are `null` when the upstream reported no usage.
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ts = self
            .ended
            .as_ref()
            .map_or_else(|| Stamp::now().rfc3339_millis(), |e| e.at.rfc3339_millis());
        let mut s = serializer.serialize_struct("Outcome", 18)?;
        s.serialize_field("ts", &ts)?;
        s.serialize_field("request_id", &self.request_id)?;
        s.serialize_field("key", &self.key_name())?;
        s.serialize_field("model", &self.model)?;
        s.serialize_field("provider", &self.provider.as_ref().map(|p| p.name.as_str()))?;
        s.serialize_field("upstream_model", &self.upstream_model)?;
        s.serialize_field("endpoint", self.endpoint.path())?;
        s.serialize_field("stream", &self.stream)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("latency_ms", &(self.latency().as_millis() as u64))?;
        s.serialize_field("ttfb_ms", &(self.ttfb().as_millis() as u64))?;
        s.serialize_field("prompt_tokens", &self.usage.map(|u| u.prompt_tokens))?;
        s.serialize_field(
            "completion_tokens",
            &self.usage.map(|u| u.completion_tokens),
        )?;
        s.serialize_field(
            "cache_read_tokens",
            &self.usage.map(|u| u.cache_read_tokens),
        )?;
        s.serialize_field(
            "cache_write_tokens",
            &self.usage.map(|u| u.cache_write_tokens),
        )?;
        s.serialize_field("cost_usd", &self.cost)?;
        s.serialize_field("error", &self.error)?;
        s.serialize_field("client_ip", &self.client_ip)?;
        s.end()
    }
}
