//! The smallest server on noviqi's HTTP layer, for `scripts/bench-http`: answers every
//! request with 13 bytes. Usage: `http_hello [ADDR]` (default 127.0.0.1:0); prints the bound
//! address on stderr and serves until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use noviqi::http::{Request, Response, Server, ServerOptions};

fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handler = |_: &mut Request<'_>| Response::bytes(200, "text/plain", &b"hello, world!"[..]);
    let server = match Server::bind(addr, ServerOptions::default(), Arc::new(handler)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
