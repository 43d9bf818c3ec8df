//! The listener, the accept loop that never dies, the bounded pool of connection threads,
//! fast 503s when the pool is full (429s when one address has its share), and graceful
//! shutdown.
//!
//! State owned here: [`Shared`] — the stop flag, the pool (queued connections, busy and live
//! thread counts, open connections per client address), the buffered-body budget and a
//! registry of open connections (a clone of each socket and its idle flag) so shutdown can
//! close idle keep-alive connections at once.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::budget::Budget;
use super::conn::{self, Buffers, ConnCtx};
use super::peers::{self, PeerCounts};
use super::response::{self, Response};
use super::wire::{Link, Wire};
use super::{Handler, HttpError, ServerOptions, tls};

/// An idle pool thread exits after this long without a connection.
const THREAD_IDLE: Duration = Duration::from_secs(60);
/// Refused (503) connections are kept this long to read what the client sent.
const REFUSE_LINGER: Duration = Duration::from_millis(500);
const REFUSE_QUEUE: usize = 256;
/// Accept errors are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A connection waiting for a thread.
struct Job {
    stream: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    /// The key this connection is counted under in [`Pool::peers`], if it is.
    counted: Option<IpAddr>,
}

#[derive(Default)]
struct Pool {
    queue: VecDeque<Job>,
    /// Connections queued or being served (never above `max_connections`).
    busy: usize,
    /// Pool threads alive (serving or waiting).
    live: usize,
    /// Connections queued or being served, per client address.
    peers: PeerCounts,
}

impl Pool {
    /// Gives back the slot (and the address's count) of a connection that is done.
    fn release(&mut self, counted: Option<IpAddr>) {
        self.busy -= 1;
        if let Some(key) = counted {
            self.peers.release(key);
        }
    }
}

/// An open connection, as shutdown sees it.
struct Entry {
    sock: TcpStream,
    idle: AtomicBool,
}

struct Shared {
    stop: AtomicBool,
    pool: Mutex<Pool>,
    wake: Condvar,
    conns: Mutex<HashMap<u64, Arc<Entry>>>,
    next_id: AtomicU64,
    /// Request-body bytes held across all connections (`max_buffered_bytes`).
    budget: Arc<Budget>,
    /// Where to connect to unblock `accept` at shutdown.
    wake_addr: SocketAddr,
}

/// A bound server, not yet running.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    opts: Arc<ServerOptions>,
    handler: Arc<dyn Handler>,
    shared: Arc<Shared>,
}

/// Stops a server from any thread. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting; `run` then closes idle connections, lets in-flight requests finish
    /// (up to `shutdown_grace`) and returns. Idempotent.
    pub fn shutdown(&self) {
        if !self.shared.stop.swap(true, Ordering::SeqCst) {
            let _ = TcpStream::connect_timeout(&self.shared.wake_addr, Duration::from_secs(1));
        }
    }
}

impl Server {
    /// Binds `addr` (port 0 picks one). Raises the soft open-file limit to the hard limit.
    pub fn bind(
        addr: SocketAddr,
        opts: ServerOptions,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        raise_nofile_limit();
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let wake_ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            pool: Mutex::new(Pool::default()),
            wake: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            budget: Arc::new(Budget::new(opts.max_buffered_bytes)),
            wake_addr: SocketAddr::new(wake_ip, addr.port()),
        });
        Ok(Server {
            listener,
            addr,
            opts: Arc::new(opts),
            handler,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves until shut down, then drains (see [`ShutdownHandle::shutdown`]).
    pub fn run(self) -> io::Result<()> {
        let (refuse_tx, refuse_rx) = mpsc::sync_channel::<Refused>(REFUSE_QUEUE);
        let handler = Arc::clone(&self.handler);
        let tls_on = self.opts.tls.is_some();
        let refuser = thread::Builder::new()
            .name("noviqi-http-503".into())
            .stack_size(256 * 1024)
            .spawn(move || refuse_loop(&refuse_rx, &*handler, tls_on))?;
        let mut errors = AcceptErrors::default();
        while !self.shared.stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if self.shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    self.dispatch(stream, peer, &refuse_tx);
                }
                Err(e) => errors.handle(&e),
            }
        }
        let Server {
            listener,
            opts,
            shared,
            ..
        } = self;
        drop(listener);
        drop(refuse_tx);
        drain(&shared, &opts);
        let _ = refuser.join();
        Ok(())
    }

    /// Runs the server on a background thread (tests, embedding).
    pub fn spawn(self) -> RunningServer {
        let addr = self.addr;
        let handle = self.shutdown_handle();
        let thread = thread::Builder::new()
            .name("noviqi-http-accept".into())
            .spawn(move || self.run());
        match thread {
            Ok(t) => RunningServer {
                addr,
                handle,
                thread: Some(t),
            },
            Err(e) => {
                log::error!("cannot start the server thread: {e}");
                RunningServer {
                    addr,
                    handle,
                    thread: None,
                }
            }
        }
    }

    /// Hands a new connection to a pool thread, or refuses it when all slots are taken or
    /// its address has its share of them.
    fn dispatch(&self, stream: TcpStream, peer: SocketAddr, refuse_tx: &mpsc::SyncSender<Refused>) {
        let _ = stream.set_nodelay(true);
        let opts = &*self.opts;
        let counted = peers::key(
            peer.ip(),
            opts.max_connections_per_ip,
            &opts.trusted_proxies,
        );
        let mut pool = self.shared.pool.lock();
        let refusal = if pool.busy >= opts.max_connections {
            Some(HttpError::Busy)
        } else {
            match (counted, opts.max_connections_per_ip) {
                (Some(key), Some(cap)) if !pool.peers.admit(key, cap) => {
                    Some(HttpError::TooManyConnections)
                }
                _ => None,
            }
        };
        if let Some(error) = refusal {
            drop(pool);
            let _ = refuse_tx.try_send((stream, error));
            return;
        }
        pool.busy += 1;
        pool.queue.push_back(Job {
            stream,
            peer,
            accepted: Instant::now(),
            counted,
        });
        if pool.live >= pool.busy {
            drop(pool);
            self.shared.wake.notify_one();
            return;
        }
        pool.live += 1;
        drop(pool);
        let worker = Worker {
            shared: Arc::clone(&self.shared),
            opts: Arc::clone(&self.opts),
            handler: Arc::clone(&self.handler),
        };
        let spawned = thread::Builder::new()
            .name("noviqi-http-conn".into())
            .stack_size(self.opts.thread_stack_bytes)
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
            let mut pool = self.shared.pool.lock();
            pool.live -= 1;
            if pool.live < pool.busy
                && let Some(job) = pool.queue.pop_back()
            {
                pool.release(job.counted);
                drop(pool);
                let _ = refuse_tx.try_send((job.stream, HttpError::Busy));
            }
        }
    }
}

/// After the accept loop: close idle connections, wait for in-flight ones, then force.
fn drain(shared: &Shared, opts: &ServerOptions) {
    shared.wake.notify_all();
    close_connections(shared, true);
    let quiet = |until: Instant| loop {
        if shared.pool.lock().busy == 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    };
    if !quiet(Instant::now() + opts.shutdown_grace) {
        log::warn!("shutdown grace over; closing the remaining connections");
        close_connections(shared, false);
        quiet(Instant::now() + Duration::from_secs(1));
    }
    shared.wake.notify_all();
}

fn close_connections(shared: &Shared, idle_only: bool) {
    for entry in shared.conns.lock().values() {
        if !idle_only || entry.idle.load(Ordering::SeqCst) {
            let _ = entry.sock.shutdown(Shutdown::Both);
        }
    }
}

/// A server running on a background thread; shut down and joined on `shutdown` or drop.
pub struct RunningServer {
    addr: SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Shuts down and waits for the server to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One pool thread: serves connections one after another until idle too long or stopped.
struct Worker {
    shared: Arc<Shared>,
    opts: Arc<ServerOptions>,
    handler: Arc<dyn Handler>,
}

/// Gives a connection slot (and its address's count) back even if serving unwinds.
struct SlotGuard<'a> {
    shared: &'a Shared,
    counted: Option<IpAddr>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.shared.pool.lock().release(self.counted);
    }
}

/// Counts a pool thread out of `live` if it unwinds (a normal exit is counted out by
/// `next_job`, under the same lock that saw the queue empty). A dead thread still counted
/// would leave queued connections waiting for it forever.
struct LiveGuard<'a>(&'a Shared);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.pool.lock().live -= 1;
        }
    }
}

/// Takes a connection out of the shutdown registry even if serving unwinds; the registry's
/// clone of the socket would otherwise keep it open (the client would never see the close).
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.conns.lock().remove(&self.id);
    }
}

impl Worker {
    fn run(self) {
        let _live = LiveGuard(&self.shared);
        let mut bufs = Buffers::new();
        while let Some(job) = self.next_job() {
            let _slot = SlotGuard {
                shared: &self.shared,
                counted: job.counted,
            };
            self.serve(job, &mut bufs);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut pool = self.shared.pool.lock();
        loop {
            if let Some(job) = pool.queue.pop_front() {
                return Some(job);
            }
            let timed_out = self.shared.stop.load(Ordering::SeqCst)
                || self
                    .shared
                    .wake
                    .wait_for(&mut pool, THREAD_IDLE)
                    .timed_out();
            if timed_out && pool.queue.is_empty() {
                pool.live -= 1;
                return None;
            }
        }
    }

    fn serve(&self, job: Job, bufs: &mut Buffers) {
        let Job {
            stream,
            peer,
            accepted,
            ..
        } = job;
        let deadline = accepted + self.opts.header_timeout;
        let _ =
            stream.set_write_timeout(Some(self.opts.write_timeout.max(Duration::from_millis(1))));
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = stream.try_clone().ok().map(|sock| {
            let entry = Arc::new(Entry {
                sock,
                idle: AtomicBool::new(false),
            });
            self.shared.conns.lock().insert(id, Arc::clone(&entry));
            entry
        });
        let _registered = entry.is_some().then_some(Registered {
            shared: &self.shared,
            id,
        });
        let ctx = ConnCtx {
            opts: &self.opts,
            handler: &*self.handler,
            stop: &self.shared.stop,
            budget: &self.shared.budget,
            idle: entry.as_ref().map(|e| &e.idle),
        };
        match &self.opts.tls {
            None => conn::serve(&mut Link::new(stream), peer, false, bufs, &ctx, deadline),
            Some(config) => serve_tls(config, stream, peer, bufs, &ctx, deadline),
        }
    }
}

/// A TLS connection: its handshake and session state live in this frame, not in every
/// connection thread's (the stack a thread touches once stays resident for its life).
#[inline(never)]
fn serve_tls(
    config: &Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    bufs: &mut Buffers,
    ctx: &ConnCtx<'_>,
    deadline: Instant,
) {
    match tls::handshake(config, stream, deadline) {
        Ok(s) => conn::serve(&mut Link::new(s), peer, true, bufs, ctx, deadline),
        Err(e) => log::debug!("TLS handshake with {peer} failed: {e}"),
    }
}

/// Raises the soft open-file limit to the hard one (one thread and socket per connection).
fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => log::debug!("open file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
}

/// Logs accept errors at most every [`LOG_EVERY`], and backs off on resource exhaustion.
#[derive(Default)]
struct AcceptErrors {
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn handle(&mut self, e: &io::Error) {
        let errno = e.raw_os_error().unwrap_or(0);
        // Failures of one pending connection: try the next one at once.
        if matches!(
            errno,
            libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM
        ) || e.kind() == io::ErrorKind::Interrupted
        {
            return;
        }
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            log::error!(
                "accept failed ({} similar suppressed): {e}",
                self.suppressed
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let pause = match errno {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => 50,
            _ => 20,
        };
        thread::sleep(Duration::from_millis(pause));
    }
}

/// A `Wire` that collects what is written, to render a refusal before sending it.
struct Collect(Vec<u8>);

impl Read for Collect {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl Write for Collect {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for Collect {
    fn set_read_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn shutdown_write(&mut self) {}
}

/// A connection refused at accept, and why.
type Refused = (TcpStream, HttpError);

/// Renders an accept-time refusal through the handler.
fn refusal_bytes(handler: &dyn Handler, error: &HttpError, tls: bool) -> Vec<u8> {
    render(conn::error_response(handler, None, error), tls)
}

fn render(resp: Response, tls: bool) -> Vec<u8> {
    let mut wire = Collect(Vec::new());
    let mut out = Vec::new();
    let framing = response::ResponseMode {
        is_head: false,
        minor: 1,
        keep_alive: false,
        tls,
    };
    let _ = response::write_response(&mut wire, &mut out, resp, &framing);
    wire.0
}

/// Answers refused connections with 503 or 429 (plain text under TLS would be garbage, so
/// there the connection is just closed) and lingers on them briefly without blocking.
fn refuse_loop(rx: &mpsc::Receiver<Refused>, handler: &dyn Handler, tls: bool) {
    let mut lingering: VecDeque<(TcpStream, Instant)> = VecDeque::new();
    let mut scratch = [0u8; 4096];
    loop {
        let next = if lingering.is_empty() {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(10))
        };
        match next {
            Ok((mut stream, error)) => {
                if !tls && stream.set_nonblocking(true).is_ok() {
                    let _ = stream.write(&refusal_bytes(handler, &error, tls));
                    let _ = stream.shutdown(Shutdown::Write);
                    if lingering.len() >= REFUSE_QUEUE {
                        lingering.pop_front();
                    }
                    lingering.push_back((stream, Instant::now() + REFUSE_LINGER));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if lingering.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(10)),
        }
        let now = Instant::now();
        lingering.retain_mut(|(s, until)| {
            if now >= *until {
                return false;
            }
            // A bounded read per pass, so one flooding client cannot hold this thread.
            for _ in 0..16 {
                match s.read(&mut scratch) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                }
            }
            true
        });
    }
}
