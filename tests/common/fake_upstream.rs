//! An in-process fake upstream for integration tests: a tiny HTTP/1.1 server on 127.0.0.1:0,
//! independent of noviqi's own server code, that records every request it receives and answers
//! with whatever the test scripts: OpenAI- or Anthropic-shaped JSON, SSE with delays between
//! events, stalls, truncations and abrupt closes.

#![allow(dead_code)]
// Test support code: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
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
    /// A complete response with a body.
    Full {
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
    /// Accept the request, then say nothing for this long and close.
    Stall(Duration),
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
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
}

type Script = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct FakeUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    disconnects: Mutex<Receiver<()>>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts the fake; `script` decides each reply.
    pub fn start(script: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (disconnect_tx, disconnect_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let connections = Arc::new(AtomicUsize::new(0));
        let accept = {
            let received = received.clone();
            let stop = stop.clone();
            let connections = connections.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let received = received.clone();
                    let script = script.clone();
                    let disconnect_tx = disconnect_tx.clone();
                    thread::spawn(move || serve(stream, &received, &*script, &disconnect_tx));
                }
            })
        };
        FakeUpstream {
            addr,
            connections,
            received,
            disconnects: Mutex::new(disconnect_rx),
            stop,
            accept: Some(accept),
        }
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
        self.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
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

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    script: &Script,
    disconnects: &Sender<()>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        received.lock().unwrap().push(request.clone());
        match script(&request) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (n, v) in headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let mut out = head.into_bytes();
                out.extend_from_slice(&body);
                if writer.write_all(&out).is_err() {
                    return;
                }
            }
            Reply::Sse { events, finish } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for (delay, event) in events {
                    thread::sleep(delay);
                    let frame = format!("{:x}\r\n{event}\r\n", event.len());
                    if writer
                        .write_all(frame.as_bytes())
                        .and_then(|_| writer.flush())
                        .is_err()
                    {
                        let _ = disconnects.send(());
                        return;
                    }
                }
                if !finish {
                    let _ = writer.shutdown(std::net::Shutdown::Both);
                    return;
                }
                // Keep writing heartbeats? No: finish the stream; a vanished peer shows up on
                // the final write or on the next read.
                if writer.write_all(b"0\r\n\r\n").is_err() {
                    let _ = disconnects.send(());
                    return;
                }
            }
            Reply::Stall(duration) => {
                thread::sleep(duration);
                return;
            }
            Reply::Close => return,
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        body
    } else if get("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        body
    } else {
        Vec::new()
    };
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// Fake providers answering in OpenAI's and Anthropic's real shapes (see that file).
#[path = "fake_providers.rs"]
pub mod providers;
