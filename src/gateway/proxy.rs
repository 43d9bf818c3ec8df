//! The proxied request: authenticate, read and probe the body, route, rate-limit, try the
//! model's targets in order, answer (whole or streamed), record usage.
//!
//! Fallback: a target that fails before any byte has gone to the client (connect error,
//! timeout before headers, 429, 5xx) hands over to the next; the last target's answer, good or
//! bad, is the client's. No target is called twice for one request.

use std::borrow::Cow;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::handler::Ctx;
use super::plan::{self, Endpoint, Plan, Translation};
use super::relay;
use super::rewrite;
use super::{Gateway, Runtime};
use crate::clock::Stamp;
use crate::config::model::{Key, MAX_MODEL_NAME_BYTES};
use crate::error::{ApiError, Kind};
use crate::http::{BodyError, Request, Response};
use crate::translate::{self, Usage};
use crate::upstream::{Method, UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::usage::UsageRecord;

/// Largest non-streamed upstream answer the gateway holds in memory.
const MAX_UPSTREAM_BODY: u64 = 64 * 1024 * 1024;

/// Client headers passed to the upstream (everything else, the gateway key included, stays).
const FORWARDED: &[&str] = &[
    "accept",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
];

/// What the usage record and access log will say about one request; filled in as it goes.
pub(super) struct Draft {
    pub request_id: String,
    pub client_ip: IpAddr,
    pub started: Instant,
    pub endpoint: Endpoint,
    pub key: Option<Arc<Key>>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub error: Option<&'static str>,
    pub usage: Option<Usage>,
    pub ttfb: Option<Duration>,
    /// (gateway's own time, upstream's time) once an upstream answered, for the metrics.
    pub timing: Option<(Duration, Duration)>,
    pub rate_headers: Vec<(&'static str, String)>,
    /// The model is a `[[models]]` name (not a client-made `provider/model`).
    pub model_configured: bool,
    /// Set once the usage record is written; a request is recorded exactly once.
    pub recorded: bool,
}

impl Gateway {
    pub(super) fn proxy(
        self: &Arc<Self>,
        runtime: &Arc<Runtime>,
        req: &mut Request<'_>,
        ctx: &Ctx,
        endpoint: Endpoint,
    ) -> Response {
        let mut draft = Draft::new(ctx.request_id.clone(), ctx.client_ip, ctx.started, endpoint);
        match self.try_proxy(runtime, req, endpoint, &mut draft) {
            Ok(response) => response,
            Err(error) => self.fail(&error, &mut draft),
        }
    }

    fn try_proxy(
        self: &Arc<Self>,
        runtime: &Arc<Runtime>,
        req: &mut Request<'_>,
        endpoint: Endpoint,
        draft: &mut Draft,
    ) -> Result<Response, ApiError> {
        let config = &runtime.config;
        let key = self.authenticate(config, req, draft.client_ip)?;
        draft.key = Some(key.clone());
        let max_body = config.server.max_body_bytes;
        let body = req.read_body(max_body).map_err(|e| match e {
            BodyError::TooLarge => ApiError::too_large(max_body),
            BodyError::Timeout => ApiError::new(Kind::RequestTimeout),
            BodyError::Overloaded => ApiError::new(Kind::Overloaded),
            other => ApiError::bad_request(other.to_string(), None),
        })?;
        let mut probe = rewrite::probe(&body)?;
        draft.stream = probe.stream;
        let model = probe
            .model
            .take()
            .ok_or_else(|| ApiError::bad_request("missing `model`", Some("model")))?;
        if model.len() > MAX_MODEL_NAME_BYTES {
            // Not recorded either: the usage log and the dashboard keep names, not payloads.
            return Err(ApiError::bad_request(
                format!("`model` is longer than {MAX_MODEL_NAME_BYTES} bytes"),
                Some("model"),
            ));
        }
        draft.model = Some(model.clone());
        if !key.allows_model(&model) {
            return Err(ApiError::new(Kind::ModelNotAllowed)
                .with_message(format!("this key may not use model `{model}`")));
        }
        let route = config.route(&model).ok_or_else(|| {
            ApiError::new(Kind::ModelNotFound).with_message(format!("unknown model `{model}`"))
        })?;
        draft.model_configured = matches!(route, Cow::Borrowed(_));
        let decision = self
            .limiter
            .check_request(&key.hash, key.limits, self.now());
        draft.rate_headers = decision.headers.header_pairs();
        if !decision.allowed {
            return Err(ApiError::rate_limited(
                decision.retry_after_secs.unwrap_or(1),
            ));
        }
        // Translation's working memory counts against max_buffered_bytes like the body does.
        let factor = route
            .targets
            .iter()
            .map(|t| plan::working_memory_factor(endpoint, t.provider.kind))
            .max()
            .unwrap_or(1);
        req.reserve_extra((body.len() as u64).saturating_mul(factor))
            .map_err(|_| ApiError::new(Kind::Overloaded))?;
        let forwarded: Vec<(&'static str, &str)> = FORWARDED
            .iter()
            .filter_map(|&name| Some((name, req.header(name)?)))
            .chain([("content-type", "application/json")])
            .collect();

        let mut last_error = None;
        let count = route.targets.len();
        for (i, target) in route.targets.iter().enumerate() {
            let is_last = i + 1 == count;
            let plan = plan::plan(
                endpoint,
                target.provider.kind,
                &body,
                &probe,
                &target.upstream_model,
            )?;
            let Some(client) = runtime.upstreams.get(&target.provider.name) else {
                log::error!("no client for provider {}", target.provider.name);
                return Err(ApiError::internal());
            };
            let sent_at = Instant::now();
            let outcome = client.send(&UpstreamRequest {
                method: Method::Post,
                path: plan.path,
                headers: &forwarded,
                body: &plan.body,
            });
            match outcome {
                Err(e) => {
                    log::warn!(
                        "request {}: provider {} failed: {e}",
                        draft.request_id,
                        target.provider.name
                    );
                    last_error = Some(upstream_error(&target.provider.name, &e));
                }
                Ok(response) if !is_last && (response.status == 429 || response.status >= 500) => {
                    log::warn!(
                        "request {}: provider {} answered {}, trying the next target",
                        draft.request_id,
                        target.provider.name,
                        response.status
                    );
                }
                Ok(response) => {
                    draft.provider = Some(target.provider.name.clone());
                    draft.upstream_model = Some(target.upstream_model.clone());
                    return Ok(self.answer(response, &plan, &probe, &model, sent_at, draft));
                }
            }
        }
        Err(last_error.unwrap_or_else(ApiError::internal))
    }

    /// Turns the upstream's answer into the client's response.
    fn answer(
        self: &Arc<Self>,
        upstream: UpstreamResponse,
        plan: &Plan,
        probe: &rewrite::Probe,
        model: &str,
        sent_at: Instant,
        draft: &mut Draft,
    ) -> Response {
        let upstream_time = sent_at.elapsed();
        let gateway_time = draft.started.elapsed().saturating_sub(upstream_time);
        draft.timing = Some((gateway_time, upstream_time));
        let dialect = draft.endpoint.dialect();
        let success = (200..300).contains(&upstream.status);
        if success && upstream.is_event_stream() {
            let relay = relay::Relay::new(plan, model, probe.include_usage);
            let timing = server_timing(gateway_time, upstream_time);
            let mut headers: Vec<(Cow<'static, str>, Cow<'static, str>)> = vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
                ("x-accel-buffering".into(), "no".into()),
                ("server-timing".into(), timing.into()),
            ];
            headers.extend(
                draft
                    .rate_headers
                    .drain(..)
                    .map(|(n, v)| (n.into(), v.into())),
            );
            let draft = std::mem::replace(draft, draft.detached());
            return relay::stream(self.clone(), upstream, relay, draft, dialect, headers);
        }
        let status = upstream.status;
        let retry_after = upstream.header("retry-after").map(str::to_owned);
        let content_type: Cow<'static, str> = match upstream.header("content-type") {
            None | Some("application/json") => "application/json".into(),
            Some(other) => other.to_owned().into(),
        };
        let mut bytes = Vec::with_capacity(4096);
        let read = upstream
            .body
            .take(MAX_UPSTREAM_BODY + 1)
            .read_to_end(&mut bytes);
        let result = match read {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(ApiError::new(Kind::UpstreamTimeout))
            }
            Err(_) => Err(ApiError::upstream(
                Kind::UpstreamUnreadable,
                "the upstream answer broke off",
            )),
            Ok(_) if bytes.len() as u64 > MAX_UPSTREAM_BODY => {
                Err(ApiError::new(Kind::UpstreamTooLarge))
            }
            Ok(_) if success => convert(plan.translation, bytes, model).map(|(body, usage)| {
                draft.usage = usage;
                body
            }),
            Ok(_) => Ok(bytes),
        };
        let upstream_time = sent_at.elapsed();
        let gateway_time = draft.started.elapsed().saturating_sub(upstream_time);
        draft.timing = Some((gateway_time, upstream_time));
        let body = match result {
            Ok(body) => body,
            Err(error) => return self.fail(&error, draft),
        };
        draft.status = status;
        if !success {
            draft.error = Some("upstream_error");
        }
        let content_type = if success && plan.translation_changes_format() {
            "application/json".into()
        } else {
            content_type
        };
        let mut response = Response::bytes(status, content_type, body)
            .with_header("server-timing", server_timing(gateway_time, upstream_time));
        if let Some(retry_after) = retry_after {
            response = response.with_header("retry-after", retry_after);
        }
        for (name, value) in draft.rate_headers.drain(..) {
            response = response.with_header(name, value);
        }
        self.finish(draft);
        response
    }

    /// Records a refused or failed request and renders its error in the endpoint's shape,
    /// with the key's rate-limit headers when it has limits.
    fn fail(&self, error: &ApiError, draft: &mut Draft) -> Response {
        draft.status = error.status();
        draft.error = Some(error.code());
        self.finish(draft);
        let mut response = error.response(draft.endpoint.dialect());
        for (name, value) in draft.rate_headers.drain(..) {
            response = response.with_header(name, value);
        }
        response
    }

    /// Writes the usage record, counts tokens against the key, logs the access line.
    pub(super) fn finish(&self, draft: &mut Draft) {
        if draft.recorded {
            return;
        }
        draft.recorded = true;
        let latency = draft.started.elapsed();
        let ttfb = draft.ttfb.unwrap_or(latency).min(latency);
        if let (Some(key), Some(usage)) = (&draft.key, draft.usage) {
            let tokens = usage.prompt_tokens + usage.completion_tokens;
            if tokens > 0 {
                self.limiter.record_tokens(&key.hash, tokens, self.now());
            }
        }
        let key_name = draft.key.as_ref().map(|k| k.name.as_str());
        let now = Stamp::now();
        self.observe(draft, latency, now.unix_secs());
        if log::log_enabled!(log::Level::Info) {
            log::info!("{}", access_line(draft, key_name, latency));
        }
        if let Some(log) = &self.usage {
            log.append(&UsageRecord {
                ts: &now.rfc3339_millis(),
                request_id: &draft.request_id,
                key: key_name,
                model: draft.model.as_deref(),
                provider: draft.provider.as_deref(),
                upstream_model: draft.upstream_model.as_deref(),
                endpoint: draft.endpoint.path(),
                stream: draft.stream,
                status: draft.status,
                latency_ms: latency.as_millis() as u64,
                ttfb_ms: ttfb.as_millis() as u64,
                prompt_tokens: draft.usage.map(|u| u.prompt_tokens),
                completion_tokens: draft.usage.map(|u| u.completion_tokens),
                error: draft.error,
                client_ip: draft.client_ip,
            });
        }
    }
}

impl Gateway {
    /// Feeds one finished request to the metrics and the dashboard's analytics.
    fn observe(&self, draft: &Draft, latency: Duration, unix_secs: i64) {
        let key = draft.key.as_ref().map(|k| k.name.as_str());
        let tokens = draft
            .usage
            .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
        self.metrics.observe(&crate::metrics::Observation {
            endpoint: draft.endpoint.path(),
            key,
            model: draft.model.as_deref(),
            status: draft.status,
            error: draft.error,
            upstream: draft.timing.map(|t| t.1),
            overhead: draft.timing.map(|t| t.0),
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
        });
        // The dashboard names `[[models]]` entries and `provider/model` names an upstream
        // answered with success; anything else a client typed is one "(other)" row.
        let named = draft.model_configured
            || (draft.provider.is_some() && (200..300).contains(&draft.status));
        let model = match draft.model.as_deref() {
            Some(_) if !named => Some(crate::admin::analytics::OTHER),
            model => model,
        };
        self.admin.record(&crate::admin::analytics::Sample {
            ts: unix_secs,
            key,
            model,
            status: draft.status,
            error: draft.error,
            latency_ms: latency.as_millis() as u64,
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
        });
    }
}

impl Draft {
    /// A draft with nothing known yet but who asked, when, and where.
    fn new(request_id: String, client_ip: IpAddr, started: Instant, endpoint: Endpoint) -> Draft {
        Draft {
            request_id,
            client_ip,
            started,
            endpoint,
            key: None,
            model: None,
            provider: None,
            upstream_model: None,
            stream: false,
            status: 0,
            error: None,
            usage: None,
            ttfb: None,
            timing: None,
            rate_headers: Vec::new(),
            model_configured: false,
            recorded: false,
        }
    }

    /// An empty shell left behind when the draft moves into a stream (already recorded, so
    /// it can never write a second usage line).
    fn detached(&self) -> Draft {
        Draft {
            stream: self.stream,
            recorded: true,
            ..Draft::new(String::new(), self.client_ip, self.started, self.endpoint)
        }
    }
}

impl Plan {
    fn translation_changes_format(&self) -> bool {
        matches!(
            self.translation,
            Translation::ChatViaAnthropic
                | Translation::MessagesViaChat
                | Translation::ResponsesViaAnthropic
        )
    }
}

/// The client's body and the usage, from a successful non-streamed upstream body.
fn convert(
    translation: Translation,
    bytes: Vec<u8>,
    model: &str,
) -> Result<(Vec<u8>, Option<Usage>), ApiError> {
    let unreadable = || {
        ApiError::upstream(
            Kind::UpstreamUnreadable,
            "the upstream answer is not valid JSON",
        )
    };
    match translation {
        Translation::OpenAi | Translation::Anthropic => {
            // The body is checked to be JSON and passed on as it came; only `usage` is read.
            #[derive(Deserialize)]
            struct UsageOnly<'a> {
                #[serde(borrow, default)]
                usage: Option<&'a RawValue>,
                #[serde(borrow, default)]
                response: Option<UsageOnlyInner<'a>>,
            }
            #[derive(Deserialize)]
            struct UsageOnlyInner<'a> {
                #[serde(borrow, default)]
                usage: Option<&'a RawValue>,
            }
            let probe: UsageOnly<'_> = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
            let usage = probe
                .usage
                .or(probe.response.and_then(|r| r.usage))
                .and_then(|u| {
                    translate::usage_from_json(u.get(), translation == Translation::Anthropic)
                });
            Ok((bytes, usage))
        }
        Translation::ChatViaAnthropic => {
            let upstream: Value = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
            let usage = translate::anthropic_usage(&upstream);
            let created = crate::clock::unix_secs();
            let out = translate::openai_to_anthropic::anthropic_response_to_chat(
                &upstream, model, created,
            )
            .map_err(|e| ApiError::upstream(Kind::UpstreamUnreadable, e.to_string()))?;
            Ok((out.to_string().into_bytes(), usage))
        }
        Translation::ResponsesViaAnthropic => {
            let upstream: Value = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
            let usage = translate::anthropic_usage(&upstream);
            let out = translate::anthropic_response_to_responses(
                &upstream,
                model,
                crate::clock::unix_secs(),
            )
            .map_err(|e| ApiError::upstream(Kind::UpstreamUnreadable, e.to_string()))?;
            Ok((out.to_string().into_bytes(), usage))
        }
        Translation::MessagesViaChat => {
            let upstream: Value = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
            let usage = translate::openai_usage(&upstream);
            let out = translate::chat_response_to_anthropic(&upstream, model)
                .map_err(|e| ApiError::upstream(Kind::UpstreamUnreadable, e.to_string()))?;
            Ok((out.to_string().into_bytes(), usage))
        }
    }
}

fn upstream_error(provider: &str, e: &UpstreamError) -> ApiError {
    let message = match e {
        UpstreamError::Timeout(_) => format!("provider `{provider}` timed out"),
        UpstreamError::Unreachable(_) => format!("provider `{provider}` is unreachable"),
        UpstreamError::Unreadable(_) => format!("provider `{provider}` sent an unreadable answer"),
    };
    let kind = match e {
        UpstreamError::Timeout(_) => Kind::UpstreamTimeout,
        UpstreamError::Unreachable(_) => Kind::UpstreamUnreachable,
        UpstreamError::Unreadable(_) => Kind::UpstreamUnreadable,
    };
    ApiError::upstream(kind, message)
}

fn server_timing(gateway: Duration, upstream: Duration) -> String {
    // Milliseconds with three decimals, from integers (float formatting, then `format!`,
    // cost more than the rest of the header).
    let mut out = String::with_capacity(48);
    let mut digits = itoa::Buffer::new();
    for (name, d) in [("gateway;dur=", gateway), (", upstream;dur=", upstream)] {
        let us = d.as_micros();
        out.push_str(name);
        out.push_str(digits.format(us / 1000));
        out.push('.');
        // 1000 + the remainder has four ASCII digits; the last three are zero-padded.
        out.push_str(&digits.format(us % 1000 + 1000)[1..]);
    }
    out
}

/// The access log line, `POST <path> <status> key=<name> model=<model> <µs>us rid=<id>`
/// and ` error=<code>` after a failed request; built by hand (through `format_args!` it
/// cost more than the usage line).
fn access_line(draft: &Draft, key: Option<&str>, latency: Duration) -> String {
    let mut line = String::with_capacity(128);
    let mut digits = itoa::Buffer::new();
    line.push_str("POST ");
    line.push_str(draft.endpoint.path());
    line.push(' ');
    line.push_str(digits.format(draft.status));
    line.push_str(" key=");
    line.push_str(key.unwrap_or("-"));
    line.push_str(" model=");
    push_sanitized(&mut line, draft.model.as_deref());
    line.push(' ');
    line.push_str(digits.format(latency.as_micros()));
    line.push_str("us rid=");
    line.push_str(&draft.request_id);
    if let Some(error) = draft.error {
        line.push_str(" error=");
        line.push_str(error);
    }
    line
}

/// A client-chosen model name as the access log shows it: at most 100 printable ASCII
/// characters, anything else as `?`; `-` when there is none.
fn push_sanitized(line: &mut String, model: Option<&str>) {
    let Some(model) = model else {
        line.push('-');
        return;
    };
    if model.len() <= 100 && model.bytes().all(|b| b.is_ascii_graphic()) {
        line.push_str(model);
        return;
    }
    line.extend(
        model
            .chars()
            .take(100)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_in_milliseconds_with_three_decimals() {
        assert_eq!(
            server_timing(Duration::from_micros(1_234), Duration::from_millis(5)),
            "gateway;dur=1.234, upstream;dur=5.000"
        );
        assert_eq!(
            server_timing(Duration::from_nanos(999), Duration::from_micros(12_345_678)),
            "gateway;dur=0.000, upstream;dur=12345.678"
        );
    }

    #[test]
    fn model_names_in_the_access_log_are_printable_and_short() {
        let sanitized = |model| {
            let mut line = String::new();
            push_sanitized(&mut line, model);
            line
        };
        assert_eq!(sanitized(None), "-");
        assert_eq!(sanitized(Some("gpt-4o-mini")), "gpt-4o-mini");
        assert_eq!(sanitized(Some("a b\nc")), "a?b?c");
        let long = "x".repeat(300);
        assert_eq!(sanitized(Some(&long)).len(), 100);
        assert_eq!(sanitized(Some("é")), "?");
    }

    #[test]
    fn access_lines_name_the_request_and_its_error() {
        let mut draft = Draft::new(
            "req_1".into(),
            IpAddr::from([127, 0, 0, 1]),
            Instant::now(),
            Endpoint::Chat,
        );
        draft.status = 200;
        draft.model = Some("gpt-4o".into());
        assert_eq!(
            access_line(&draft, Some("laptop"), Duration::from_micros(1234)),
            "POST /v1/chat/completions 200 key=laptop model=gpt-4o 1234us rid=req_1"
        );
        draft.status = 502;
        draft.error = Some("upstream_error");
        draft.model = None;
        assert_eq!(
            access_line(&draft, None, Duration::ZERO),
            "POST /v1/chat/completions 502 key=- model=- 0us rid=req_1 error=upstream_error"
        );
    }
}
