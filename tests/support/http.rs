//! Test helper for the HTTP layer: start a server on 127.0.0.1:0 with a closure handler, and a
//! tiny raw client that reads responses off a real socket (pipelining included).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use noviqi::http::{Handler, Request, Response, RunningServer, Server, ServerOptions};

/// Options with short timeouts suited to tests.
pub fn opts() -> ServerOptions {
    ServerOptions {
        max_connections: 16,
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(2),
        body_total_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(5),
        ..ServerOptions::default()
    }
}

pub fn start(opts: ServerOptions, handler: impl Handler) -> RunningServer {
    Server::bind("127.0.0.1:0".parse().unwrap(), opts, Arc::new(handler))
        .unwrap()
        .spawn()
}

/// A handler that counts its calls and answers `hello, world!` (13 bytes) after reading the
/// whole body; the body length goes in `x-body-len`.
pub fn counting() -> (Arc<AtomicUsize>, impl Handler) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let handler = move |req: &mut Request<'_>| {
        c.fetch_add(1, Ordering::SeqCst);
        match req.read_body(u64::MAX) {
            Ok(body) => Response::bytes(200, "text/plain", &b"hello, world!"[..])
                .with_header("x-body-len", body.len().to_string())
                .with_header("x-path", req.target().to_owned()),
            Err(e) => Response::new(e.status()),
        }
    };
    (calls, handler)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP client over any stream, keeping leftover bytes between responses.
pub struct Client<S: Read + Write> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Reads more bytes; false at EOF or error.
    fn more(&mut self) -> bool {
        let mut b = [0u8; 8192];
        match self.stream.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    fn take_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.more() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.more() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads only a head (status and headers).
    pub fn read_head(&mut self) -> Option<Resp> {
        let status_line = self.take_line()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let line = self.take_line()?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        Some(Resp {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// Reads one whole response (`head` = no body expected). None if the connection ended
    /// before a complete response.
    pub fn read_response(&mut self, head: bool) -> Option<Resp> {
        let mut resp = self.read_head()?;
        if head || resp.status == 204 || resp.status == 304 || resp.status / 100 == 1 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            loop {
                let size = usize::from_str_radix(&self.take_line()?, 16).ok()?;
                if size == 0 {
                    self.take_line()?;
                    break;
                }
                resp.body.extend(self.take(size)?);
                self.take_line()?;
            }
        } else if let Some(len) = resp.header("content-length") {
            resp.body = self.take(len.parse().ok()?)?;
        } else {
            while self.more() {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }

    /// True when the peer has closed (EOF or reset) within the read timeout.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.more()
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Option<Resp> {
    let mut c = Client::new(connect(addr));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response(false)
}

impl<S: Read + Write> Client<S> {
    /// Reads one chunk of a chunked body; None at the last chunk or on a broken stream.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let size = usize::from_str_radix(&self.take_line()?, 16).ok()?;
        if size == 0 {
            return None;
        }
        let data = self.take(size)?;
        self.take_line()?;
        Some(data)
    }
}

impl<S: Read + Write> Client<S> {
    /// Reads until the peer closes (EOF or reset) and returns what was left unread; None when
    /// the read timeout passes first (the connection is still open).
    pub fn rest_until_close(&mut self) -> Option<Vec<u8>> {
        let mut b = [0u8; 8192];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return Some(std::mem::take(&mut self.buf)),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Some(std::mem::take(&mut self.buf));
                }
                Err(_) => return None,
            }
        }
    }
}
