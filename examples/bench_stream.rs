//! The streaming client of `scripts/bench`: opens N connections at once, sends R streamed chat
//! requests on each (keep-alive), and times every SSE event as it arrives at the client.
//!
//! Usage: `bench_stream ADDR --model M [--key K] [--conns N] [--repeat R] [--events E]
//! [--delay-ms D]`. A stream is complete when its E content events (`"content":"tok …"`),
//! `data: [DONE]` and the end of the HTTP body all arrive. Prints one line:
//! `ok=.. fail=.. ttfb_p50_ms=.. ttfb_max_ms=.. total_p50_ms=.. total_max_ms=..
//! gap_dev_p99_ms=.. gap_dev_max_ms=..`, where ttfb is from sending the request to the first
//! content event, total to the end of the body, and gap_dev how far each gap between two
//! events at the client strays from the upstream's D ms.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    model: String,
    key: String,
    conns: usize,
    repeat: usize,
    events: usize,
    delay: Duration,
}

#[derive(Default)]
struct Outcome {
    ok: usize,
    fail: usize,
    ttfb: Vec<f64>,
    total: Vec<f64>,
    gap_dev: Vec<f64>,
}

/// One response read off the wire: event arrival times and whether it ended cleanly.
struct Stream {
    status: u16,
    content_times: Vec<Instant>,
    done: bool,
    clean_end: bool,
    end: Instant,
}

/// Reads an HTTP/1.1 response head and its body, calling `on_body` with each body piece.
fn read_response(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut on_body: impl FnMut(&[u8]),
) -> io::Result<(u16, bool)> {
    let mut scratch = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut scratch)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&scratch[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    buf.drain(..head_end);
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<bool> {
        let n = sock.read(&mut scratch)?;
        buf.extend_from_slice(&scratch[..n]);
        Ok(n > 0)
    };
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                if !fill(buf)? {
                    return Ok((status, false));
                }
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::other("bad chunk size"))?;
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(buf)? {
                    return Ok((status, false));
                }
            }
            if size == 0 {
                buf.drain(..line_end + 4);
                return Ok((status, true));
            }
            on_body(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
        }
    } else if let Some(len) = length {
        while buf.len() < len {
            if !fill(buf)? {
                return Ok((status, false));
            }
        }
        on_body(&buf[..len]);
        buf.drain(..len);
        Ok((status, true))
    } else {
        loop {
            on_body(buf);
            buf.clear();
            if !fill(buf)? {
                return Ok((status, true));
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn one_stream(sock: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> io::Result<Stream> {
    sock.write_all(request)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut content_times = Vec::new();
    let mut done = false;
    let (status, clean_end) = read_response(sock, buf, |piece| {
        let now = Instant::now();
        pending.extend_from_slice(piece);
        while let Some(i) = find(&pending, b"\n\n") {
            let event = &pending[..i];
            if find(event, b"\"content\":\"tok ").is_some() {
                content_times.push(now);
            } else if find(event, b"data: [DONE]").is_some() {
                done = true;
            }
            pending.drain(..i + 2);
        }
    })?;
    Ok(Stream {
        status,
        content_times,
        done,
        clean_end,
        end: Instant::now(),
    })
}

fn worker(args: &Args, barrier: &Barrier) -> Outcome {
    let mut out = Outcome::default();
    let body = format!(
        r#"{{"model":"{}","stream":true,"messages":[{{"role":"user","content":"Say hello."}}]}}"#,
        args.model
    );
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        args.addr,
        args.key,
        body.len(),
        body
    );
    let sock = TcpStream::connect(&args.addr).and_then(|s| {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(s)
    });
    barrier.wait();
    let Ok(mut sock) = sock else {
        out.fail += args.repeat;
        return out;
    };
    let mut buf = Vec::new();
    for _ in 0..args.repeat {
        let sent = Instant::now();
        match one_stream(&mut sock, request.as_bytes(), &mut buf) {
            Ok(s)
                if s.status == 200
                    && s.done
                    && s.clean_end
                    && s.content_times.len() == args.events =>
            {
                out.ok += 1;
                out.ttfb.push(ms(s.content_times[0] - sent));
                out.total.push(ms(s.end - sent));
                let expected = ms(args.delay);
                for pair in s.content_times.windows(2) {
                    out.gap_dev.push((ms(pair[1] - pair[0]) - expected).abs());
                }
            }
            Ok(_) => out.fail += 1,
            Err(_) => {
                out.fail += 1;
                break;
            }
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn parse() -> Option<Args> {
    let mut args = Args {
        addr: String::new(),
        model: "gpt-4o-mini".into(),
        key: "none".into(),
        conns: 1,
        repeat: 1,
        events: 20,
        delay: Duration::from_millis(50),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => args.model = it.next()?,
            "--key" => args.key = it.next()?,
            "--conns" => args.conns = it.next()?.parse().ok()?,
            "--repeat" => args.repeat = it.next()?.parse().ok()?,
            "--events" => args.events = it.next()?.parse().ok()?,
            "--delay-ms" => args.delay = Duration::from_millis(it.next()?.parse().ok()?),
            _ if !a.starts_with('-') => args.addr = a,
            _ => return None,
        }
    }
    (!args.addr.is_empty()).then_some(args)
}

fn main() -> ExitCode {
    let Some(args) = parse() else {
        eprintln!(
            "usage: bench_stream ADDR --model M [--key K] [--conns N] [--repeat R] [--events E] [--delay-ms D]"
        );
        return ExitCode::FAILURE;
    };
    let args = Arc::new(args);
    let barrier = Arc::new(Barrier::new(args.conns));
    let mut threads = Vec::new();
    for _ in 0..args.conns {
        let (args, barrier) = (args.clone(), barrier.clone());
        let spawned = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || worker(&args, &barrier));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("cannot start client thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut all = Outcome::default();
    for t in threads {
        if let Ok(o) = t.join() {
            all.ok += o.ok;
            all.fail += o.fail;
            all.ttfb.extend(o.ttfb);
            all.total.extend(o.total);
            all.gap_dev.extend(o.gap_dev);
        }
    }
    eprintln!(
        "ok={} fail={} ttfb_p50_ms={:.3} ttfb_max_ms={:.3} total_p50_ms={:.3} total_max_ms={:.3} gap_dev_p99_ms={:.3} gap_dev_max_ms={:.3}",
        all.ok,
        all.fail,
        pct(&mut all.ttfb, 0.5),
        pct(&mut all.ttfb, 1.0),
        pct(&mut all.total, 0.5),
        pct(&mut all.total, 1.0),
        pct(&mut all.gap_dev, 0.99),
        pct(&mut all.gap_dev, 1.0),
    );
    ExitCode::SUCCESS
}
