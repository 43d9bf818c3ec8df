//! OpenAI-compatible and Anthropic upstreams over HTTP(S), through one ureq `Agent` per
//! provider on the same rustls stack the server uses (ring provider).
//!
//! Owns the provider's connection pools (sized to the server's concurrency: ureq's default of
//! three idle connections per host churns thousands of sockets into TIME_WAIT under load;
//! spread over `AGENTS` agents so their locks are not contended) and the pre-built
//! authentication header. Timeouts: connect ≤ 10 s, the provider's
//! `timeout_secs` for the first byte of the answer and again for every read after it (an idle
//! timeout, so a long stream that keeps producing is never cut), and `request_timeout_secs` for
//! the whole exchange. Proxies come from the environment as curl reads them: `https_proxy` /
//! `HTTPS_PROXY` for https, `http_proxy` for http, `ALL_PROXY` for either, unless `NO_PROXY`
//! names the host.

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector};
use zeroize::Zeroizing;

use super::{Method, UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::config::model::{ProviderKind, ProviderSettings, ServerSettings};

/// Upper bound on connecting, whatever the provider's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// ureq's per-connection buffers: the most each may grow to (see `transport`, which starts
/// them small). ureq's default, 128 KiB each zero-filled up front, was 256 KiB resident per
/// upstream connection, over 250 MiB at 1000 concurrent streams. The input buffer's limit
/// bounds an upstream's response head (providers send 1–4 KiB; nginx's default
/// `proxy_buffer_size` is 4 or 8 KiB). The output buffer doubles from 2 KiB as a request body
/// needs and is given back once the request is sent, so its limit costs memory only while a
/// big body goes out: 256 KiB sends a 2 MB Claude Code session in about ten writes (16 KiB
/// took 130, each a syscall).
const INPUT_BUFFER: usize = 32 * 1024;
const OUTPUT_BUFFER: usize = 256 * 1024;

/// Response headers relayed to the client (everything else is the gateway's business).
const KEPT_HEADERS: &[&str] = &["content-type", "retry-after"];

/// The most upstream paths whose parsed URL is kept (there are about six).
const MAX_URIS: usize = 16;

/// ureq agents (connection pools) per provider. ureq keeps a pool behind one mutex, taken
/// twice per request; with dozens of connection threads on two cores, waiting for it was the
/// main source of futex calls at 64 concurrent requests. Each connection thread sticks to one
/// agent, chosen round-robin on its first request.
const AGENTS: usize = 8;

pub struct Remote {
    provider: Arc<ProviderSettings>,
    /// `AGENTS` agents with the same settings, each with its own pool (never empty).
    agents: Vec<ureq::Agent>,
    /// `(name, value)` of the credential header, built once; zeroized on drop.
    auth: Option<(&'static str, Zeroizing<String>)>,
    /// `base_url` + path, parsed, for each path used so far: building and parsing the URL
    /// on every request was a tenth of the request's time in ureq.
    uris: RwLock<Vec<(&'static str, Uri)>>,
}

impl Remote {
    pub fn new(
        provider: Arc<ProviderSettings>,
        server: &ServerSettings,
    ) -> Result<Remote, super::SetupError> {
        let mut tls = TlsConfig::builder();
        if let Some(ca_file) = &provider.ca_file {
            tls = tls.root_certs(roots_with(ca_file)?);
        }
        let timeout = Some(provider.timeout);
        let pool = server.max_connections.max(16);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("noviqi/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(pool)
            .max_idle_connections_per_host(pool)
            .input_buffer_size(INPUT_BUFFER)
            .max_response_header_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(provider.timeout)))
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .timeout_global(Some(server.request_timeout))
            .proxy(proxy_for(&provider.base_url))
            .tls_config(tls.build())
            .build();
        let auth = provider.api_key.as_ref().map(|key| match provider.kind {
            ProviderKind::Anthropic => ("x-api-key", Zeroizing::new(key.expose().to_owned())),
            ProviderKind::OpenAi | ProviderKind::Mock => (
                "authorization",
                Zeroizing::new(format!("Bearer {}", key.expose())),
            ),
        });
        let agents = (0..AGENTS)
            .map(|_| {
                // ureq's default chain, with our TCP transport in place of its own.
                let connector =
                    ().chain(ConnectProxyConnector::default())
                        .chain(super::transport::Tcp)
                        .chain(RustlsConnector::default());
                ureq::Agent::with_parts(
                    config.clone(),
                    connector,
                    super::resolve::CachingResolver::default(),
                )
            })
            .collect();
        Ok(Remote {
            provider,
            agents,
            auth,
            uris: RwLock::new(Vec::new()),
        })
    }

    /// The request URL for `path`, parsed once.
    fn uri(&self, path: &'static str) -> Result<Uri, UpstreamError> {
        if let Some((_, uri)) = self.uris.read().iter().find(|(p, _)| *p == path) {
            return Ok(uri.clone());
        }
        let uri: Uri = format!("{}{path}", self.provider.base_url)
            .parse()
            .map_err(|e: ureq::http::uri::InvalidUri| UpstreamError::Unreadable(e.to_string()))?;
        let mut uris = self.uris.write();
        if uris.len() < MAX_URIS && !uris.iter().any(|(p, _)| *p == path) {
            uris.push((path, uri.clone()));
        }
        Ok(uri)
    }

    /// This thread's agent.
    fn agent(&self) -> &ureq::Agent {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let slot = SLOT.with(|s| *s);
        // `agents` holds AGENTS > 0 agents, so the index is in range.
        &self.agents[slot % self.agents.len()]
    }
}

impl super::Provider for Remote {
    fn send(&self, request: &UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        let url = self.uri(request.path)?;
        let result = match request.method {
            Method::Get => {
                let mut builder = self.agent().get(url);
                for (name, value) in self.headers(request) {
                    builder = builder.header(name, value);
                }
                builder.call()
            }
            Method::Post => {
                let mut builder = self.agent().post(url);
                for (name, value) in self.headers(request) {
                    builder = builder.header(name, value);
                }
                builder.send(request.body)
            }
        };
        let response = result.map_err(classify)?;
        let status = response.status().as_u16();
        if status < 200 {
            // An interim status as the final answer (a consumed 100 never gets here). Relayed,
            // a 101 would leave the client's connection to be read as a tunnel: never relay it.
            return Err(UpstreamError::Unreadable(format!(
                "the upstream answered {status}, an interim status, as its final answer"
            )));
        }
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = response.into_body().into_reader();
        Ok(UpstreamResponse {
            status,
            headers,
            body: Box::new(ClassifiedReader(body)),
        })
    }
}

impl Remote {
    /// Forwarded client headers, then the provider's static headers, then its credential (so
    /// neither a client nor a static header can replace the credential).
    fn headers<'a>(
        &'a self,
        request: &'a UpstreamRequest<'_>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        let forwarded = request.headers.iter().map(|&(name, value)| (name, value));
        let anthropic_version = (self.provider.kind == ProviderKind::Anthropic
            && !request
                .headers
                .iter()
                .any(|(name, _)| *name == "anthropic-version"))
        .then_some(("anthropic-version", "2023-06-01"));
        let statics = self
            .provider
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let auth = self
            .auth
            .as_ref()
            .map(|(name, value)| (*name, value.as_str()));
        forwarded
            .chain(anthropic_version)
            .chain(statics)
            .chain(auth)
    }
}

/// Keeps timeouts distinguishable from other read failures once the body is streaming: ureq
/// reports them as `io::Error`s wrapping its own error.
struct ClassifiedReader<R>(R);

impl<R: Read> Read for ClassifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let timed_out = e.kind() == io::ErrorKind::TimedOut
                || e.kind() == io::ErrorKind::WouldBlock
                || e.get_ref()
                    .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                    .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_)));
            if timed_out {
                io::Error::new(io::ErrorKind::TimedOut, "upstream read timed out")
            } else {
                e
            }
        })
    }
}

fn classify(error: ureq::Error) -> UpstreamError {
    match error {
        ureq::Error::Timeout(which) => UpstreamError::Timeout(which.to_string()),
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            UpstreamError::Timeout(e.to_string())
        }
        ureq::Error::Protocol(e) => UpstreamError::Unreadable(e.to_string()),
        ureq::Error::Http(e) => UpstreamError::Unreadable(e.to_string()),
        ureq::Error::BodyExceedsLimit(n) => {
            UpstreamError::Unreadable(format!("body exceeds {n} bytes"))
        }
        ureq::Error::HostNotFound => UpstreamError::Unreachable("host not found".into()),
        ureq::Error::ConnectionFailed => UpstreamError::Unreachable("connection failed".into()),
        other => UpstreamError::Unreachable(other.to_string()),
    }
}

/// The bundled Mozilla roots plus every certificate in `ca_file`.
fn roots_with(ca_file: &std::path::Path) -> Result<RootCerts, super::SetupError> {
    let path = || ca_file.to_owned();
    let pem = std::fs::read(ca_file).map_err(|source| super::SetupError::CaFileUnreadable {
        path: path(),
        source,
    })?;
    let extra = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<Certificate<'static>>, _>>()
        .map_err(|e| super::SetupError::CaFileInvalid {
            path: path(),
            reason: e.to_string(),
        })?;
    if extra.is_empty() {
        return Err(super::SetupError::CaFileEmpty { path: path() });
    }
    let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned());
    Ok(RootCerts::from(bundled.chain(extra)))
}

/// The proxy curl would use for `base_url`, honouring `NO_PROXY`.
fn proxy_for(base_url: &str) -> Option<ureq::Proxy> {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    };
    let https = base_url.starts_with("https://");
    let chosen = if https {
        env(&["https_proxy", "HTTPS_PROXY"])
    } else {
        // Like curl, only the lower-case form for plain http (HTTP_PROXY is CGI-spoofable).
        env(&["http_proxy"])
    }
    .or_else(|| env(&["all_proxy", "ALL_PROXY"]))?;
    let host = host_of(base_url);
    if let Some(no_proxy) = env(&["no_proxy", "NO_PROXY"])
        && no_proxy_matches(&no_proxy, host)
    {
        return None;
    }
    if chosen
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("socks")
    {
        log::warn!(
            "ignoring a SOCKS proxy setting from the environment: only HTTP proxies are supported"
        );
        return None;
    }
    match ureq::Proxy::new(&chosen) {
        Ok(proxy) => Some(proxy),
        Err(_) => {
            log::warn!("ignoring an unparsable proxy setting from the environment");
            None
        }
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// curl's `NO_PROXY` rules: `*` matches all; an entry matches the host itself and its
/// subdomains (a leading dot is ignored); IP entries may be CIDRs.
fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        if let Some(ip) = ip {
            if let Ok(net) = entry.parse::<ipnet::IpNet>() {
                return net.contains(&ip);
            }
            if let Ok(addr) = entry.parse::<IpAddr>() {
                return addr == ip;
            }
        }
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        !entry.is_empty()
            && (host == entry
                || (host.ends_with(&entry) && host[..host.len() - entry.len()].ends_with('.')))
    })
}

#[cfg(test)]
mod tests {
    use super::{host_of, no_proxy_matches};

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(host_of("http://127.0.0.1:11434/v1"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8080"), "::1");
        assert_eq!(host_of("http://user:pw@host:1/x"), "host");
    }

    #[test]
    fn no_proxy_like_curl() {
        assert!(no_proxy_matches("*", "api.openai.com"));
        assert!(no_proxy_matches("openai.com", "api.openai.com"));
        assert!(no_proxy_matches(".openai.com", "api.openai.com"));
        assert!(no_proxy_matches("localhost, 127.0.0.0/8", "127.0.0.1"));
        assert!(!no_proxy_matches("openai.com", "notopenai.com"));
        assert!(!no_proxy_matches("10.0.0.0/8", "127.0.0.1"));
        assert!(!no_proxy_matches("", "example.com"));
    }
}
