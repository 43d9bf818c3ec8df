//! HTTP layer: the accept loop survives running out of file descriptors and serves again
//! once connections close. The server runs in a child process (this test binary re-executed
//! with an env var) whose RLIMIT_NOFILE is lowered, so the limit does not touch other tests.
// Test code: a failed unwrap is a failed test (helpers are not `#[test]` fns for clippy).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use noviqi::http::ServerOptions;
use support::eventually;
use support::http::{get, opts, start};

const CHILD_ENV: &str = "NOVIQI_HTTP_FD_CHILD";

/// Runs only inside the child: serve with 48 descriptors until stdin closes.
#[test]
fn fd_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, 48, 48).unwrap();
    let (_, h) = support::http::counting();
    let srv = start(
        ServerOptions {
            max_connections: 1000,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            ..opts()
        },
        h,
    );
    println!("PORT {}", srv.addr().port());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    srv.shutdown();
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn survives_fd_exhaustion_and_serves_again() {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "fd_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("child exited").unwrap();
        // libtest prints "test fd_child ... " on the same line first.
        if let Some(at) = line.find("PORT ") {
            break line[at + 5..].trim().parse().unwrap();
        }
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(get(addr, "/").unwrap().status, 200);

    // Far more connections than the child has descriptors: accept must fail with EMFILE.
    let flood: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let fds = format!("/proc/{}/fd", child.0.id());
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_dir(&fds)
            .unwrap()
            .count()
            >= 46),
        "the child never ran out of descriptors"
    );
    // Keep it at the limit a while: the accept loop now meets EMFILE and must back off.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.0.try_wait().unwrap().is_none(), "server process died");
    drop(flood);
    assert!(
        eventually(Duration::from_secs(10), || get(addr, "/")
            .is_some_and(|r| r.status == 200)),
        "server did not recover after descriptors were freed"
    );
    assert!(child.0.try_wait().unwrap().is_none());
    drop(child.0.stdin.take());
    assert!(eventually(Duration::from_secs(10), || child
        .0
        .try_wait()
        .unwrap()
        .is_some()));
}
