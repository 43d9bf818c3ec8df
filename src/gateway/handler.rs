//! The HTTP entry point: request ids, routing by (method, path), the small local endpoints
//! (`/healthz`, `/v1/models`, `/`), and the access log line. Proxied endpoints go to
//! `proxy.rs`; `/admin*` and `/metrics` to [`crate::admin`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Gateway, Runtime};
use crate::clientip;
use crate::error::{ApiError, Dialect, Kind};
use crate::http::{Handler, HttpError, Request, Response};
use crate::translate::Endpoint;

/// The gateway as the HTTP layer sees it.
pub struct GatewayHandler(pub Arc<Gateway>);

/// Per-request facts every path needs.
pub(super) struct Ctx {
    pub request_id: String,
    pub client_ip: IpAddr,
    pub started: Instant,
    /// The client spoke TLS to us, or to a trusted proxy that says so (`X-Forwarded-Proto`).
    pub https: bool,
}

impl Handler for GatewayHandler {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        let gateway = &self.0;
        let runtime = gateway.runtime();
        let ctx = Ctx {
            request_id: request_id(gateway, req),
            client_ip: clientip::client_ip(
                req.peer().ip(),
                req.headers()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
                    .filter_map(|(_, value)| std::str::from_utf8(value).ok()),
                &runtime.config.server.trusted_proxies,
            ),
            started: Instant::now(),
            https: req.is_tls()
                || clientip::forwarded_https(
                    req.peer().ip(),
                    req.header("x-forwarded-proto"),
                    &runtime.config.server.trusted_proxies,
                ),
        };
        let server = &runtime.config.server;
        let response = if host_allowed(req, &server.allowed_hosts) {
            route(gateway, &runtime, req, &ctx)
        } else {
            ApiError::new(Kind::HostNotAllowed)
                .with_message("this Host is not in the gateway's allowed_hosts")
                .response(Dialect::of_path(req.path()))
        };
        let mut response = response.with_header("x-request-id", ctx.request_id.clone());
        if ctx.https && !req.is_tls() {
            // Under our own TLS the HTTP layer sends it; behind a TLS proxy we do.
            response = response.with_header("strict-transport-security", "max-age=31536000");
        }
        if !req.path().starts_with("/v1/") || Endpoint::from_path(req.path()).is_none() {
            // Proxied endpoints log when their usage record is final (streams end later).
            log::info!(
                "{} {} {} {}us",
                req.method(),
                req.path(),
                response.status,
                ctx.started.elapsed().as_micros()
            );
        }
        response
    }

    fn error_response(&self, path: Option<&str>, error: &HttpError) -> Response {
        let dialect = path.map_or(Dialect::OpenAi, Dialect::of_path);
        ApiError::from(error)
            .response(dialect)
            .with_header("x-request-id", self.0.new_request_id())
    }
}

fn route(
    gateway: &Arc<Gateway>,
    runtime: &Arc<Runtime>,
    req: &mut Request<'_>,
    ctx: &Ctx,
) -> Response {
    let method = req.method();
    let is_get = method == "GET" || method == "HEAD";
    let path = req.path();
    if let Some(endpoint) = Endpoint::from_path(path) {
        if method == "POST" {
            return gateway.proxy(runtime, req, ctx, endpoint);
        }
        if method == "HEAD" {
            return Response::new(200);
        }
        return ApiError::new(Kind::MethodNotAllowed)
            .response(endpoint.dialect())
            .with_header("allow", "POST");
    }
    if path == "/metrics" || path == "/admin" || path.starts_with("/admin/") {
        let authenticate =
            |r: &Request<'_>| gateway.authenticate(&runtime.config, r, ctx.client_ip);
        let reload = || super::reload::reload(&runtime.config.path, gateway);
        let deps = crate::admin::Deps {
            config: &runtime.config,
            lockout: &gateway.lockout,
            now: gateway.now(),
            client_ip: ctx.client_ip,
            https: ctx.https,
            metrics: &gateway.metrics,
            spend: &gateway.spend,
            targets: &gateway.targets,
            cluster: gateway.cluster.as_deref(),
            authenticate: &authenticate,
            reload: &reload,
        };
        return if path == "/metrics" {
            gateway.admin.metrics(&deps, req)
        } else {
            gateway.admin.handle(&deps, req)
        };
    }
    match path {
        "/healthz" if is_get => Response::json(200, &b"{\"status\":\"ok\"}"[..]),
        "/" if is_get => Response::bytes(
            200,
            "text/plain; charset=utf-8",
            &b"noviqi AI gateway: see /v1/models\n"[..],
        ),
        "/v1/models" if is_get => match models(gateway, runtime, req, ctx) {
            Ok(response) => response,
            Err(e) => e.response(Dialect::OpenAi),
        },
        "/healthz" | "/" | "/v1/models" => ApiError::new(Kind::MethodNotAllowed)
            .response(Dialect::OpenAi)
            .with_header("allow", "GET, HEAD"),
        _ if method == "HEAD" => Response::new(200),
        _ => ApiError::new(Kind::NotFound)
            .with_message(format!("no such endpoint: {method} {path}"))
            .response(Dialect::of_path(path)),
    }
}

/// `GET /v1/models`: the `[[models]]` names this key may use, in OpenAI's list shape, or in
/// Anthropic's (`type`, `display_name`, `created_at`, paging fields) for clients that send
/// `anthropic-version` (the Anthropic SDKs' `models.list()`).
fn models(
    gateway: &Gateway,
    runtime: &Runtime,
    req: &Request<'_>,
    ctx: &Ctx,
) -> Result<Response, ApiError> {
    let key = gateway.authenticate(&runtime.config, req, ctx.client_ip)?;
    let names = runtime
        .config
        .models
        .iter()
        .filter(|m| key.allows_model(&m.name))
        .map(|m| m.name.as_str());
    let body = if req.header("anthropic-version").is_some() {
        let data: Vec<_> = names
            .map(|name| {
                json!({"type": "model", "id": name, "display_name": name,
                       "created_at": "1970-01-01T00:00:00Z"})
            })
            .collect();
        json!({"data": data, "has_more": false, "first_id": data.first().map(|m| &m["id"]),
               "last_id": data.last().map(|m| &m["id"])})
    } else {
        let data: Vec<_> = names
            .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "noviqi"}))
            .collect();
        json!({"object": "list", "data": data})
    };
    Ok(Response::json(200, body.to_string()))
}

/// Whether the request's `Host` is in `allowed` (always, when `allowed` is empty). An entry
/// without a port matches the host on any port; one with a port matches exactly. `/healthz`
/// is exempt: it reveals nothing, and health checkers rarely send a public name.
fn host_allowed(req: &Request<'_>, allowed: &[String]) -> bool {
    allowed.is_empty()
        || req.path() == "/healthz"
        || req
            .header("host")
            .is_some_and(|host| host_matches(host, allowed))
}

/// [`host_allowed`] for one `Host` value.
fn host_matches(host: &str, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    // `[::1]:8420` → (`[::1]`, `8420`); `example.net.:80` → (`example.net`, `80`).
    let (name, port) = match host.rfind(']') {
        Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    allowed.iter().any(|entry| match entry.rsplit_once(':') {
        // An entry with a port (not the colons of a bare IPv6 literal).
        Some((entry_name, entry_port))
            if !entry_port.contains(']') && !entry_name.ends_with('[') =>
        {
            entry_name == name && Some(entry_port) == port
        }
        _ => entry == name,
    })
}

/// The id for this request: the client's `x-request-id` when short and printable, else a new
/// one.
fn request_id(gateway: &Gateway, req: &Request<'_>) -> String {
    match req.header("x-request-id") {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_owned()
        }
        _ => gateway.new_request_id(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn hosts_match_by_name_or_by_name_and_port() {
        let allowed = ["localhost", "ai.example.net:8443", "[::1]", "127.0.0.1"].map(String::from);
        for host in [
            "localhost",
            "LOCALHOST:8420",
            "localhost.",
            "ai.example.net:8443",
            "[::1]:8420",
            "[::1]",
            "127.0.0.1:1",
        ] {
            assert!(host_matches(host, &allowed), "{host}");
        }
        for host in [
            "evil.test",
            "ai.example.net",
            "ai.example.net:443",
            "localhost.evil.test",
            "[::2]:8420",
            "",
            "127.0.0.2",
        ] {
            assert!(!host_matches(host, &allowed), "{host}");
        }
    }
}
