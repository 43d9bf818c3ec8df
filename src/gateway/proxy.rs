//! The proxied request: authenticate, read and probe the body, route, rate-limit, try the
//! model's targets in order, answer (whole or streamed), record usage.
//!
//! Fallback: a target that fails before any byte has gone to the client (connect error,
//! timeout before headers, 429, 5xx) hands over to the next; the last target's answer, good or
//! bad, is the client's. No target is called twice for one request.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use super::finish::{Draft, server_timing};
use super::handler::Ctx;
use super::relay;
use super::{Gateway, Runtime};
use crate::config::model::MAX_MODEL_NAME_BYTES;
use crate::config::model::Target;
use crate::error::{ApiError, Kind};
use crate::http::{BodyError, Request, Response};
use crate::outcome::{Outcome, Timing};
use crate::routing::{self, Attempt, Change, First, Verdict};
use crate::translate::plan::{self, Endpoint, Plan};
use crate::translate::rewrite::{self, Probe};
use crate::upstream::{Method, UpstreamError, UpstreamRequest, UpstreamResponse};

/// Largest non-streamed upstream answer the gateway holds in memory.
const MAX_UPSTREAM_BODY: u64 = 64 * 1024 * 1024;

/// Client headers passed to the upstream (everything else, the gateway key included, stays).
const FORWARDED: &[&str] = &[
    "accept",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
];

impl Gateway {
    pub(super) fn proxy(
        self: &Arc<Self>,
        runtime: &Arc<Runtime>,
        req: &mut Request<'_>,
        ctx: &Ctx,
        endpoint: Endpoint,
    ) -> Response {
        let mut draft = Draft::new(Outcome::new(
            ctx.request_id.clone(),
            ctx.client_ip,
            ctx.started,
            endpoint,
        ));
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
        let key = self.authenticate(config, req, draft.outcome.client_ip)?;
        draft.outcome.key = Some(key.clone());
        let max_body = config.server.max_body_bytes;
        let body = req.read_body(max_body).map_err(|e| match e {
            BodyError::TooLarge => ApiError::too_large(max_body),
            BodyError::Timeout => ApiError::new(Kind::RequestTimeout),
            BodyError::Overloaded => ApiError::new(Kind::Overloaded),
            other => ApiError::bad_request(other.to_string(), None),
        })?;
        let mut probe = rewrite::probe(&body)?;
        draft.outcome.stream = probe.stream;
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
        draft.outcome.model = Some(model.clone());
        if !key.allows_model(&model) {
            return Err(ApiError::new(Kind::ModelNotAllowed)
                .with_message(format!("this key may not use model `{model}`")));
        }
        let route = config.route(&model).ok_or_else(|| {
            ApiError::new(Kind::ModelNotFound).with_message(format!("unknown model `{model}`"))
        })?;
        draft.outcome.model_configured = matches!(route, Cow::Borrowed(_));
        self.admit(&key, draft)?;
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

        // The strategy picks the first target; the others follow in config order, each only
        // if it is open when its turn comes.
        let states = config
            .model_position(&model)
            .and_then(|i| runtime.routes.get(i));
        let count = route.targets.len();
        let first = states.map_or(First::default(), |s| s.first(self.now()));
        let order = std::iter::once(first.index).chain((0..count).filter(|&i| i != first.index));
        let mut tried = 0;
        let mut last_error = None;
        // A failing answer (429, 5xx) kept while a later target may still take the request:
        // if none does, it is the client's.
        let mut held: Option<Answer<'_>> = None;
        for i in order {
            let Some(target) = route.targets.get(i) else {
                continue;
            };
            let mut attempt = match states {
                Some(s) => match s.start(i, self.now(), tried == 0 && first.force) {
                    Some(attempt) => Some(attempt),
                    None => continue,
                },
                None => None,
            };
            tried += 1;
            held = None;
            last_error = None;
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
            let verdict = match &outcome {
                Ok(response) => Verdict::of_status(response.status),
                Err(e) => verdict_of(e),
            };
            if let Some(attempt) = &mut attempt {
                let retry_after = match &outcome {
                    Ok(response) if verdict == Verdict::RateLimited => response
                        .header("retry-after")
                        .and_then(routing::retry_after),
                    _ => None,
                };
                let change = attempt.report(verdict, self.now(), retry_after);
                self.share_change(attempt.target(), change);
                let failed = verdict.is_failure();
                self.admin
                    .record_attempt(attempt.target(), failed, sent_at.elapsed());
            }
            match outcome {
                Err(e) => {
                    log::warn!(
                        "request {}: target {} failed: {e}",
                        draft.outcome.request_id,
                        target.name
                    );
                    last_error = Some(upstream_error(&target.provider.name, &e));
                }
                Ok(response) => {
                    let answer = Answer {
                        target,
                        response,
                        plan,
                        sent_at,
                        attempt,
                    };
                    if !verdict.is_failure() || tried == count {
                        return Ok(self.answer(answer, &probe, &model, draft));
                    }
                    log::warn!(
                        "request {}: target {} answered {}, trying the next target",
                        draft.outcome.request_id,
                        target.name,
                        verdict.label()
                    );
                    held = Some(answer);
                }
            }
        }
        match held {
            Some(answer) => Ok(self.answer(answer, &probe, &model, draft)),
            None => Err(last_error.unwrap_or_else(ApiError::internal)),
        }
    }

    /// Turns a target's answer into the client's response.
    fn answer(
        self: &Arc<Self>,
        answer: Answer<'_>,
        probe: &Probe,
        model: &str,
        draft: &mut Draft,
    ) -> Response {
        let Answer {
            target,
            response: upstream,
            plan,
            sent_at,
            attempt,
        } = answer;
        let plan = &plan;
        draft.outcome.provider = Some(target.provider.clone());
        draft.outcome.upstream_model = Some(target.upstream_model.clone());
        draft.outcome.pricing = Some(target.pricing);
        draft.attempt = attempt;
        let timing = draft.timing_since(sent_at);
        let success = (200..300).contains(&upstream.status);
        if success && upstream.is_event_stream() {
            let reader = plan.stream_reader(model, probe.include_usage);
            let mut headers: Vec<(Cow<'static, str>, Cow<'static, str>)> = vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
                ("x-accel-buffering".into(), "no".into()),
                (
                    "server-timing".into(),
                    server_timing(timing.gateway, timing.upstream).into(),
                ),
            ];
            headers.extend(
                draft
                    .rate_headers
                    .drain(..)
                    .map(|(n, v)| (n.into(), v.into())),
            );
            if let Some(remaining) = draft.budget_remaining.take() {
                headers.push((
                    "x-noviqi-budget-remaining-usd".into(),
                    remaining.to_string().into(),
                ));
            }
            let draft = std::mem::replace(draft, draft.detached());
            return relay::stream(self.clone(), upstream, reader, draft, headers);
        }
        let status = upstream.status;
        let retry_after = upstream.header("retry-after").map(str::to_owned);
        let content_type: Cow<'static, str> = match upstream.header("content-type") {
            _ if success && plan.changes_format() => "application/json".into(),
            None | Some("application/json") => "application/json".into(),
            Some(other) => other.to_owned().into(),
        };
        let result = read_whole(upstream).and_then(|bytes| {
            if !success {
                return Ok(bytes);
            }
            let (body, usage) = plan.response_body(bytes, model, crate::clock::unix_secs())?;
            draft.outcome.usage = usage;
            Ok(body)
        });
        let timing = draft.timing_since(sent_at);
        let body = match result {
            Ok(body) => body,
            Err(error) => return self.fail(&error, draft),
        };
        draft.outcome.status = status;
        if !success {
            draft.outcome.error = Some("upstream_error");
        }
        let mut response = Response::bytes(status, content_type, body).with_header(
            "server-timing",
            server_timing(timing.gateway, timing.upstream),
        );
        if let Some(retry_after) = retry_after {
            response = response.with_header("retry-after", retry_after);
        }
        let response = draft.key_headers(response);
        self.finish(draft);
        response
    }
}

/// One target's answer head, with what it takes to turn it into the client's response.
struct Answer<'r> {
    target: &'r Target,
    response: UpstreamResponse,
    plan: Plan<'r>,
    sent_at: Instant,
    /// Counts the target in flight until the draft that takes it drops.
    attempt: Option<Attempt>,
}

impl Draft {
    /// Records where the time went, the upstream's share counted from `sent_at`.
    fn timing_since(&mut self, sent_at: Instant) -> Timing {
        let upstream = sent_at.elapsed();
        let timing = Timing {
            gateway: self.outcome.started.elapsed().saturating_sub(upstream),
            upstream,
        };
        self.outcome.timing = Some(timing);
        timing
    }
}

/// A non-streamed upstream answer, whole, bounded by [`MAX_UPSTREAM_BODY`].
fn read_whole(upstream: UpstreamResponse) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::with_capacity(4096);
    let read = upstream
        .body
        .take(MAX_UPSTREAM_BODY + 1)
        .read_to_end(&mut bytes);
    match read {
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
        Ok(_) => Ok(bytes),
    }
}

impl Gateway {
    /// Tells the other instances that a target started or ended a cooldown.
    fn share_change(&self, target: &str, change: Change) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let shared = match change {
            Change::None => return,
            Change::Cooling(wait) => cluster.enter_cooldown(target, wait),
            Change::Recovered => cluster.end_cooldown(target),
        };
        if let Err(e) = shared {
            log::debug!("cluster: target {target}'s cooldown change not shared: {e}");
        }
    }
}

/// How a call that got no answer head failed.
fn verdict_of(e: &UpstreamError) -> Verdict {
    match e {
        UpstreamError::Timeout(_) => Verdict::Timeout,
        UpstreamError::Unreachable(_) => Verdict::Unreachable,
        UpstreamError::Unreadable(_) => Verdict::Unreadable,
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
