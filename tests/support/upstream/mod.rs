//! The one fake LLM upstream, for the integration tests and for the example servers that
//! `scripts/compat`, `scripts/soak` and `scripts/bench` run: a small HTTP/1.1 server on plain
//! std sockets that records what it receives and answers with whatever its script returns.
//!
//! Raw sockets rather than noviqi's own HTTP layer: the faults a gateway must survive (a closed
//! connection with no answer, a body shorter than its `content-length`, a stream cut before its
//! end, a stall mid-stream, bytes that are not HTTP at all) need control below a well-behaved
//! server, and a fake should not share the code it tests.
//!
//! A script is a function from the request to a [`Reply`]. The ready-made ones answer in the
//! providers' wire formats, built by [`answer`]:
//! - [`providers`]: OpenAI and Anthropic as their SDKs see them (echo, tool calls, errors);
//! - [`compat`]: the developer tools' fake (Claude Code, Codex, aider, llm);
//! - [`soak`]: every upstream fault, chosen by a marker in the prompt;
//! - [`bench`]: a cheap stream with tunable pacing.
//!
//! State owned: the accept thread, one thread per connection, the requests received (unless
//! [`Options::record`] is off, as in long runs) and the [`Counters`].

#![allow(dead_code)]
// Support code: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod answer;
pub mod bench;
pub mod compat;
pub mod providers;
pub mod soak;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Longest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read (Claude Code's turns run to hundreds of KiB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target as sent, query string included.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream received JSON")
    }

    /// The whole request as text, for "the secret never appears" checks.
    pub fn raw_text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.path);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// What the fake answers.
pub enum Reply {
    /// A complete response with a `content-length` body.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A head announcing the whole body, then only its first half, then the connection closed.
    Truncated {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `text/event-stream`, chunked, each event written and flushed after its delay. With
    /// `finish: false` the connection is closed without the terminating chunk.
    Sse {
        events: Vec<(Duration, String)>,
        finish: bool,
    },
    /// Bytes written as they are (not necessarily HTTP); the connection is closed when the
    /// peer closes or after 5 s, as a tunnel would.
    Raw(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Wait, then answer.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// Accept the request, then say nothing for `duration` and close.
    pub fn stall(duration: Duration) -> Reply {
        Reply::Close.after(duration)
    }

    pub fn after(self, delay: Duration) -> Reply {
        Reply::After(delay, Box::new(self))
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } | Reply::Truncated { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// The same head, but the body breaks off halfway.
    pub fn truncated(self) -> Reply {
        match self {
            Reply::Full {
                status,
                headers,
                body,
            } => Reply::Truncated {
                status,
                headers,
                body,
            },
            other => other,
        }
    }

    /// SSE from `data:` payloads, `gap` before each.
    pub fn sse_data(payloads: &[String], gap: Duration) -> Reply {
        Reply::Sse {
            events: payloads
                .iter()
                .map(|p| (gap, format!("data: {p}\n\n")))
                .collect(),
            finish: true,
        }
    }

    /// SSE from complete event blocks (`event: …\ndata: …\n\n`), `gap` between them (the
    /// first at once).
    pub fn sse(blocks: Vec<String>, gap: Duration) -> Reply {
        Reply::Sse {
            events: paced(blocks, gap),
            finish: true,
        }
    }
}

/// Event blocks `gap` apart, the first at once.
pub fn paced(blocks: Vec<String>, gap: Duration) -> Vec<(Duration, String)> {
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| (if i == 0 { Duration::ZERO } else { gap }, b))
        .collect()
}

/// Counts kept whether or not requests are recorded (`GET /stats` of the example servers).
#[derive(Default)]
pub struct Counters {
    /// Requests read, on every connection.
    pub requests: AtomicU64,
    /// Connections accepted, refused ones included.
    pub connections: AtomicU64,
    /// Connections being served now.
    pub open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
}

/// The [`Counters`] read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub requests: u64,
    pub connections: u64,
    pub open: u64,
    pub refused: u64,
}

impl Counters {
    pub fn now(&self) -> Count {
        Count {
            requests: self.requests.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
            open: self.open.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::SeqCst),
        }
    }
}

/// How the fake listens. [`Options::default`] suits a test: 127.0.0.1:0, requests recorded.
pub struct Options {
    pub addr: SocketAddr,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: u64,
    /// Stack of each connection's thread.
    pub stack_bytes: usize,
    /// A connection with no new request for this long is closed.
    pub idle: Duration,
    /// Keep every request for [`FakeUpstream::received`] (off for long runs: it only grows).
    pub record: bool,
    pub counters: Arc<Counters>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: ([127, 0, 0, 1], 0).into(),
            max_connections: u64::MAX,
            stack_bytes: 2 * 1024 * 1024,
            idle: Duration::from_secs(30),
            record: true,
            counters: Arc::default(),
        }
    }
}

type Script = dyn Fn(&Received) -> Reply + Send + Sync;

/// What every connection thread shares.
struct Shared {
    script: Box<Script>,
    record: bool,
    idle: Duration,
    received: Mutex<Vec<Received>>,
    counters: Arc<Counters>,
    disconnects: Mutex<Sender<()>>,
}

pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    disconnects: Mutex<Receiver<()>>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts the fake on 127.0.0.1:0; `script` decides each reply.
    pub fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> FakeUpstream {
        FakeUpstream::start_with(Options::default(), script).expect("bind 127.0.0.1:0")
    }

    pub fn start_with(
        options: Options,
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> io::Result<FakeUpstream> {
        let listener = TcpListener::bind(options.addr)?;
        let addr = listener.local_addr()?;
        let (disconnect_tx, disconnect_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            script: Box::new(script),
            record: options.record,
            idle: options.idle,
            received: Mutex::new(Vec::new()),
            counters: options.counters,
            disconnects: Mutex::new(disconnect_tx),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            let (max, stack) = (options.max_connections, options.stack_bytes);
            thread::spawn(move || accept_loop(&listener, &shared, &stop, max, stack))
        };
        Ok(FakeUpstream {
            addr,
            shared,
            disconnects: Mutex::new(disconnect_rx),
            stop,
            accept: Some(accept),
        })
    }

    /// A target that refuses: every connection is accepted and closed at once, so the
    /// attempts can be counted ([`FakeUpstream::connections`]).
    pub fn refusing() -> FakeUpstream {
        FakeUpstream::start_with(
            Options {
                max_connections: 0,
                ..Options::default()
            },
            |_r: &Received| Reply::Close,
        )
        .expect("bind 127.0.0.1:0")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — a provider `base_url` prefix.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections the gateway has opened to this upstream.
    pub fn connections(&self) -> usize {
        self.shared.counters.now().connections as usize
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the upstream received a request")
    }

    /// Waits until a streaming write fails because the peer (the gateway) went away.
    pub fn wait_disconnect(&self, timeout: Duration) -> bool {
        self.disconnects
            .lock()
            .unwrap()
            .recv_timeout(timeout)
            .is_ok()
    }

    /// Serves until the process ends (the example servers).
    pub fn serve_forever(mut self) {
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    max: u64,
    stack: usize,
) {
    let counters = &shared.counters;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else {
            // EMFILE and friends: back off a little rather than spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        if counters.open.load(Ordering::SeqCst) >= max {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        counters.open.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        let spawned = thread::Builder::new().stack_size(stack).spawn(move || {
            serve(stream, &shared);
            shared.counters.open.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            counters.open.fetch_sub(1, Ordering::SeqCst);
            eprintln!("fake upstream: cannot spawn a connection thread");
        }
    }
}

/// Serves one connection: requests in turn, until a reply ends it, the peer goes or it idles.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(shared.idle));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut input) {
        shared.counters.requests.fetch_add(1, Ordering::SeqCst);
        if shared.record {
            shared.received.lock().unwrap().push(request.clone());
        }
        let reply = (shared.script)(&request);
        match write_reply(&mut out, &mut input, reply, shared) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    let _ = out.shutdown(Shutdown::Both);
}

/// Writes `reply`; whether the connection may carry another request.
fn write_reply(
    out: &mut TcpStream,
    input: &mut BufReader<TcpStream>,
    reply: Reply,
    shared: &Shared,
) -> io::Result<bool> {
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut bytes = head(status, &headers, Some(body.len())).into_bytes();
            bytes.extend_from_slice(&body);
            out.write_all(&bytes)?;
            out.flush()?;
            Ok(true)
        }
        Reply::Truncated {
            status,
            headers,
            body,
        } => {
            let mut bytes = head(status, &headers, Some(body.len())).into_bytes();
            bytes.extend_from_slice(&body[..body.len() / 2]);
            out.write_all(&bytes)?;
            out.flush()?;
            Ok(false)
        }
        Reply::Sse { events, finish } => {
            let headers = [
                ("content-type".to_owned(), "text/event-stream".to_owned()),
                ("cache-control".to_owned(), "no-cache".to_owned()),
            ];
            out.write_all(head(200, &headers, None).as_bytes())?;
            out.flush()?;
            let gone = |e: io::Error| {
                let _ = shared.disconnects.lock().unwrap().send(());
                e
            };
            for (delay, event) in events {
                thread::sleep(delay);
                let mut frame = format!("{:x}\r\n", event.len()).into_bytes();
                frame.extend_from_slice(event.as_bytes());
                frame.extend_from_slice(b"\r\n");
                out.write_all(&frame)
                    .and_then(|()| out.flush())
                    .map_err(gone)?;
            }
            if !finish {
                return Ok(false);
            }
            // The end of the body in a write of its own, as a real server may send it.
            out.write_all(b"0\r\n\r\n")
                .and_then(|()| out.flush())
                .map_err(gone)?;
            Ok(true)
        }
        Reply::Raw(bytes) => {
            out.write_all(&bytes)?;
            out.flush()?;
            let _ = input
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(5)));
            let _ = input.read(&mut [0u8; 4096]);
            Ok(false)
        }
        Reply::Close => Ok(false),
        Reply::After(delay, reply) => {
            thread::sleep(delay);
            write_reply(out, input, *reply, shared)
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A response head: `content-length` when `length` is known, else chunked.
fn head(status: u16, headers: &[(String, String)], length: Option<usize>) -> String {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    match length {
        Some(n) => h.push_str(&format!("content-length: {n}\r\n")),
        None => h.push_str("transfer-encoding: chunked\r\n"),
    }
    for (name, value) in headers {
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// Reads one `\n`-terminated line, counting it against `budget`.
fn line(input: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut raw = Vec::new();
    let n = input
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', &mut raw)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    *budget = budget.saturating_sub(n);
    if !raw.ends_with(b"\n") {
        return Err(bad("line too long"));
    }
    Ok(String::from_utf8_lossy(&raw).trim_end().to_owned())
}

/// The next request on the connection; `None` at a clean end (EOF or idle timeout before a
/// request starts). Plain TCP here; `examples/bench_upstream.rs` reads TLS with it too.
pub fn read_request(input: &mut impl BufRead) -> io::Result<Option<Received>> {
    let mut budget = MAX_HEAD;
    let Ok(first) = line(input, &mut budget) else {
        return Ok(None);
    };
    let mut parts = first.split_whitespace();
    let method = parts.next().ok_or_else(|| bad("no method"))?.to_owned();
    let path = parts.next().ok_or_else(|| bad("no target"))?.to_owned();
    let mut headers = Vec::new();
    loop {
        let l = line(input, &mut budget)?;
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').ok_or_else(|| bad("header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Received {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        request.body = read_chunked(input)?;
    } else if let Some(n) = request.header("content-length") {
        let n: usize = n.parse().map_err(|_| bad("content-length"))?;
        if n > MAX_BODY {
            return Err(bad("body too large"));
        }
        request.body.resize(n, 0);
        input.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn read_chunked(input: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let size = line(input, &mut budget)?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            while !line(input, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        input.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        input.read_exact(&mut crlf)?;
    }
}
