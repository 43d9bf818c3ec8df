//! A fast fake upstream for `scripts/bench`: the tests' fake (`tests/support/upstream/`) with
//! its bench script — chat, Messages and Responses answers in the shape of the path called,
//! streams of CHUNKS events DELAY_MS apart (or as the model name's `s<N>x<D>` says), answers
//! held by the model name's `hold<D>`, and `GET /stats` with the connections accepted and
//! requests served (see `tests/support/upstream/bench.rs`). A bench tool only: examples are not
//! installed by `cargo install`.
//!
//! Usage: `bench_upstream [ADDR] [--chunks N] [--delay-ms D] [--tls-cert PEM --tls-key PEM]`
//! (defaults 127.0.0.1:0, 20, 50). With `--tls-cert` and `--tls-key` it speaks HTTPS (rustls,
//! the same script) instead of HTTP. Prints the bound address on stderr and serves until
//! killed.

#[path = "../tests/support/upstream/mod.rs"]
mod upstream;

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use upstream::bench::Bench;
use upstream::{Counters, FakeUpstream, Options, Reply};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut chunks = 20;
    let mut delay_ms = 50;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next().and_then(|v| v.parse::<u64>().ok())
        };
        match arg.as_str() {
            "--chunks" => match value(&mut args) {
                Some(v) => chunks = v as u32,
                None => return usage(),
            },
            "--delay-ms" => match value(&mut args) {
                Some(v) => delay_ms = v,
                None => return usage(),
            },
            "--tls-cert" => cert = args.next().map(PathBuf::from),
            "--tls-key" => key = args.next().map(PathBuf::from),
            a if !a.starts_with('-') => addr = a.to_owned(),
            _ => return usage(),
        }
    }
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage();
    };
    let counters = Arc::new(Counters::default());
    let bench = Bench {
        chunks,
        delay: Duration::from_millis(delay_ms),
        counters: Arc::clone(&counters),
        held: Arc::default(),
    };
    match (cert, key) {
        (None, None) => serve_plain(addr, counters, bench),
        (Some(cert), Some(key)) => serve_tls(addr, &cert, &key, bench),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench_upstream [ADDR] [--chunks N] [--delay-ms D] [--tls-cert PEM --tls-key PEM]"
    );
    ExitCode::FAILURE
}

/// Plain HTTP: the tests' fake as it is.
fn serve_plain(addr: SocketAddr, counters: Arc<Counters>, bench: Bench) -> ExitCode {
    let options = Options {
        addr,
        max_connections: 8192,
        stack_bytes: 256 * 1024,
        record: false,
        counters,
        ..Options::default()
    };
    let fake = match FakeUpstream::start_with(options, move |r| bench.answer(r)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {}", fake.addr());
    fake.serve_forever();
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------- HTTPS

/// HTTPS: a thread per connection, one request at a time (the bench script's replies: whole
/// bodies and SSE, with or without a delay), keep-alive unless the client says `close`.
fn serve_tls(addr: SocketAddr, cert: &PathBuf, key: &PathBuf, bench: Bench) -> ExitCode {
    let config = match tls_config(cert, key) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("cannot load {} / {}: {e}", cert.display(), key.display());
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("listening on {a} (TLS)"),
        Err(e) => eprintln!("listening (TLS), address unknown: {e}"),
    }
    let bench = Arc::new(bench);
    for conn in listener.incoming() {
        let Ok(sock) = conn else {
            // EMFILE and friends: back off a little rather than spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        bench.counters.connections.fetch_add(1, Ordering::SeqCst);
        let (config, bench) = (Arc::clone(&config), Arc::clone(&bench));
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = serve_tls_conn(sock, config, &bench);
            });
        if spawned.is_err() {
            eprintln!("bench_upstream: cannot spawn a connection thread");
        }
    }
    ExitCode::SUCCESS
}

fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<ServerConfig, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn serve_tls_conn(sock: TcpStream, config: Arc<ServerConfig>, bench: &Bench) -> io::Result<()> {
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    sock.set_write_timeout(Some(Duration::from_secs(30)))?;
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, sock));
    while let Some(request) = upstream::read_request(&mut tls)? {
        bench.counters.requests.fetch_add(1, Ordering::SeqCst);
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        write_reply(tls.get_mut(), bench.answer(&request), close)?;
        if close {
            break;
        }
    }
    let out = tls.get_mut();
    out.conn.send_close_notify();
    out.flush()
}

fn write_reply(out: &mut Tls, reply: Reply, close: bool) -> io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut bytes = head(status, &headers, connection);
            bytes.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            let mut bytes = bytes.into_bytes();
            bytes.extend_from_slice(&body);
            out.write_all(&bytes)?;
            out.flush()
        }
        Reply::Sse { events, .. } => {
            let headers = [("content-type".to_owned(), "text/event-stream".to_owned())];
            let mut bytes = head(200, &headers, connection);
            bytes.push_str("transfer-encoding: chunked\r\n\r\n");
            out.write_all(bytes.as_bytes())?;
            out.flush()?;
            for (delay, event) in events {
                thread::sleep(delay);
                let frame = format!("{:x}\r\n{event}\r\n", event.len());
                out.write_all(frame.as_bytes())?;
                out.flush()?;
            }
            out.write_all(b"0\r\n\r\n")?;
            out.flush()
        }
        Reply::After(delay, reply) => {
            thread::sleep(delay);
            write_reply(out, *reply, close)
        }
        _ => Err(io::Error::other(
            "the bench script gave a reply the TLS side cannot send",
        )),
    }
}

/// A response head without its blank line.
fn head(status: u16, headers: &[(String, String)], connection: &str) -> String {
    let mut h = format!("HTTP/1.1 {status} OK\r\nconnection: {connection}\r\n");
    for (name, value) in headers {
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h
}
