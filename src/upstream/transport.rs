//! The TCP transport under every upstream call (ureq's connector chain, in place of its own
//! `TcpConnector`): the same blocking socket, with three system calls fewer per request.
//!
//! Profiled against nginx, a proxied request cost ~13 system calls where nginx needs ~5.
//! Three of them are removed here:
//! - **One write per request.** ureq transmits the request head and then the body as two
//!   writes: two TCP segments, and two wake-ups of the upstream. [`UpstreamLink`] keeps what ureq
//!   transmits in its output buffer and sends it all in one write when ureq next waits for
//!   input (or the buffer is more than half full), so a small request leaves in one segment.
//! - **Timeouts set when they change.** ureq passes the time left of the whole exchange with
//!   every read and write, so the socket's timeout was set again each time. A timeout already
//!   on the socket is kept when it is at most [`SLACK`] longer than the one asked for: a
//!   timeout may fire up to that much late, never early.
//! - **No probe of a connection in use.** Before reusing a pooled connection ureq checks that
//!   the peer has not closed it (non-blocking mode on, a read that must would-block, blocking
//!   mode off), both when the connection returns to the pool and when it is taken out. A
//!   connection that carried bytes less than [`FRESH`] ago is answered from memory: servers
//!   close idle keep-alive connections after seconds, not milliseconds. A connection idle for
//!   longer is probed as before, and one with unread bytes left over is never reused.
//!
//! Buffers start small and grow when needed: the output buffer ([`SMALL_OUTPUT`]) only for a
//! big request, and it is given back once the request is sent; the input buffer
//! ([`SMALL_INPUT`]) for a long response head or a big answer.
//!
//! State owned here: per upstream connection, the socket, its input and output buffers, the
//! timeouts last set on it and when it last carried bytes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, NextTimeout, ShutdownHandle, Transport,
};

/// A connection that carried bytes this recently is taken to be open without a probe.
pub(crate) const FRESH: Duration = Duration::from_millis(100);

/// The most a timeout already set on the socket may exceed the one asked for and be kept.
pub(crate) const SLACK: Duration = Duration::from_millis(500);

/// The output buffer a request starts with: its head and a small body leave in one write from
/// it. A bigger request grows it to the configured size while it is sent. Either way it is
/// given back once the request is out, so a connection waiting on a long stream holds none
/// (zero-filling 16 KiB for every request was 15% of a request's instructions; 2 KiB is
/// about 1%; holding 16 KiB per connection was 16 MiB at 1000 open streams).
const SMALL_OUTPUT: usize = 2 * 1024;

/// Past this, a request's output buffer jumps to the configured size (a big body), taken from
/// [`SPARE_OUTPUTS`] when one is there.
const MEDIUM_OUTPUT: usize = 16 * 1024;

/// Full-size output buffers given back by big requests, kept for the next ones: zero-filling
/// (or faulting in) 256 KiB per big request cost more than copying its body. At most
/// [`SPARES_KEPT`], so at most 1 MiB stays allocated between big requests.
static SPARE_OUTPUTS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
const SPARES_KEPT: usize = 4;

/// The input buffer a connection starts with: a response head and a stream's events fit. It
/// doubles when a read fills it (up to [`READ_GROWTH_LIMIT`]) or when a response head does
/// not fit (up to the configured size, which bounds the head).
const SMALL_INPUT: usize = 2 * 1024;

/// How far reads alone grow the input buffer.
const READ_GROWTH_LIMIT: usize = 8 * 1024;

/// ureq encodes a chunked request body through a scratch area (the free part of the input
/// buffer); this much at least, so a chunked body goes out in pieces of up to 1 KiB. Bodies of
/// known length (every body noviqi sends) never use it, so it must not grow the input buffer:
/// ureq's own buffers insist on 10 KiB, and 4 KiB here kept every connection's input buffer at
/// twice [`SMALL_INPUT`], 2 MiB at 1000 open streams.
const MIN_TMP: usize = SMALL_INPUT / 2;

/// Each address of a host gets at least this long to connect.
const MIN_PER_ADDRESS: Duration = Duration::from_millis(10);

/// Connects plain TCP when nothing earlier in the chain (a CONNECT proxy) has.
#[derive(Debug, Default)]
pub(crate) struct Tcp;

impl<In: Transport> Connector<In> for Tcp {
    type Out = Either<In, UpstreamLink>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if let Some(transport) = chained {
            return Ok(Some(Either::A(transport)));
        }
        let stream = connect_any(details)?;
        stream.set_nodelay(true)?;
        let link = UpstreamLink::new(
            stream,
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        (details.register_shutdown)(link.shutdown_handle())?;
        Ok(Some(Either::B(link)))
    }
}

/// Tries the host's addresses in order; the first gets half the time left, the next half of
/// what remains, and so on (the last gets all of it).
fn connect_any(details: &ConnectionDetails) -> Result<TcpStream, Error> {
    let budget = details.timeout.not_zero().map(|t| *t);
    let started = Instant::now();
    let count = details.addrs.len();
    let mut last_err = None;
    for (i, addr) in details.addrs.iter().enumerate() {
        let per_addr = budget.map(|budget| {
            let left = budget.saturating_sub(started.elapsed());
            let share = if i + 1 == count { left } else { left / 2 };
            share.max(MIN_PER_ADDRESS)
        });
        match connect_one(*addr, per_addr) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                let timed_out = matches!(e, Error::Timeout(_));
                if timed_out && budget.is_some_and(|b| started.elapsed() >= b) {
                    return Err(Error::Timeout(details.timeout.reason));
                }
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| {
        Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "no address to connect to",
        ))
    }))
}

fn connect_one(addr: SocketAddr, timeout: Option<Duration>) -> Result<TcpStream, Error> {
    let result = match timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t),
        None => TcpStream::connect(addr),
    };
    result.map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            Error::Timeout(ureq::Timeout::Connect)
        }
        _ => Error::Io(e),
    })
}

/// One upstream TCP connection.
pub(crate) struct UpstreamLink {
    /// Shared (weakly) with the agent so its shutdown can interrupt blocked I/O.
    stream: Arc<TcpStream>,
    bufs: LinkBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// When bytes last went either way (or a probe last found the connection open).
    last_io: Option<Instant>,
}

impl std::fmt::Debug for UpstreamLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLink")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

impl UpstreamLink {
    fn new(stream: TcpStream, input_size: usize, output_size: usize) -> UpstreamLink {
        UpstreamLink {
            stream: Arc::new(stream),
            bufs: LinkBuffers::new(input_size, output_size),
            read_timeout: None,
            write_timeout: None,
            last_io: None,
        }
    }

    fn shutdown_handle(&self) -> Weak<dyn ShutdownHandle> {
        Arc::downgrade(&self.stream) as Weak<dyn ShutdownHandle>
    }

    /// Sends everything ureq has transmitted so far.
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        if self.bufs.pending == 0 {
            return Ok(());
        }
        let timeout = checked(timeout.for_write())?;
        set_timeout(
            &self.stream,
            &mut self.write_timeout,
            timeout.not_zero().map(|t| *t),
            TcpStream::set_write_timeout,
        )?;
        let pending = self.bufs.pending;
        self.bufs.pending = 0;
        (&*self.stream)
            .write_all(&self.bufs.output[..pending])
            .map_err(|e| io_error(e, timeout))?;
        self.last_io = Some(Instant::now());
        Ok(())
    }

    /// Before reading: sends what is pending. The request is then out, and its buffer is not
    /// needed while the answer comes (for a stream, seconds to minutes), so it is given back
    /// rather than held per connection.
    fn finish_request(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        if self.bufs.pending > 0 {
            self.flush(timeout)?;
        }
        if !self.bufs.output.is_empty() {
            let output = std::mem::take(&mut self.bufs.output);
            if output.len() > MEDIUM_OUTPUT && output.len() == self.bufs.output_size {
                let mut spares = SPARE_OUTPUTS.lock();
                if spares.len() < SPARES_KEPT {
                    spares.push(output);
                }
            }
        }
        Ok(())
    }
}

impl Transport for UpstreamLink {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.bufs
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        checked(timeout.for_write())?;
        self.bufs.pending = (self.bufs.pending + amount).min(self.bufs.output.len());
        if self.bufs.pending > self.bufs.output.len() / 2 {
            if self.bufs.output.len() < self.bufs.output_size {
                // A bigger request: more room, so it still leaves in as few writes as can be.
                self.bufs.grow_output();
            } else {
                self.flush(timeout)?;
            }
        }
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        // The request must be on the wire before its answer is looked for, even in bytes
        // already buffered.
        self.finish_request(timeout)?;
        if self.bufs.can_use_input() {
            return Ok(true);
        }
        self.await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.finish_request(timeout)?;
        let timeout = checked(timeout.for_read())?;
        set_timeout(
            &self.stream,
            &mut self.read_timeout,
            timeout.not_zero().map(|t| *t),
            TcpStream::set_read_timeout,
        )?;
        let free = self.bufs.input_append_buf();
        let room = free.len();
        let amount = loop {
            match (&*self.stream).read(free) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => break result.map_err(|e| io_error(e, timeout))?,
            }
        };
        self.bufs.input_appended(amount);
        if amount == room {
            // More may be waiting: a big answer is read in bigger pieces from now on.
            self.bufs.grow_input(READ_GROWTH_LIMIT);
        }
        self.last_io = Some(Instant::now());
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        if self.bufs.pending > 0 || !self.bufs.input().is_empty() {
            // Half a request unsent, or bytes past the last response: not reusable.
            return false;
        }
        if self.last_io.is_some_and(|at| at.elapsed() < FRESH) {
            return true;
        }
        let open = probe(&self.stream);
        self.last_io = open.then(Instant::now);
        open
    }
}

/// True when the peer has neither closed the connection nor sent anything unasked.
fn probe(mut stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(stream.read(&mut [0u8]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}

fn checked(timeout: NextTimeout) -> Result<NextTimeout, Error> {
    if timeout.after.is_zero() {
        Err(Error::Timeout(timeout.reason))
    } else {
        Ok(timeout)
    }
}

fn io_error(e: io::Error, timeout: NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(timeout.reason),
        _ => Error::Io(e),
    }
}

/// Sets a socket timeout unless the one in place is the same or at most [`SLACK`] longer.
fn set_timeout(
    stream: &TcpStream,
    current: &mut Option<Duration>,
    wanted: Option<Duration>,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    if keeps(*current, wanted) {
        return Ok(());
    }
    set(stream, wanted)?;
    *current = wanted;
    Ok(())
}

/// Whether a socket with timeout `current` already serves a wait of at most `wanted`.
fn keeps(current: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (current, wanted) {
        (None, None) => true,
        (Some(cur), Some(want)) => cur >= want && cur - want <= SLACK,
        _ => false,
    }
}

/// ureq's view of a connection's memory: an input buffer it parses from, and an output
/// buffer it writes into, of which the first `pending` bytes are transmitted but not sent.
/// Both are allocated on first use.
struct LinkBuffers {
    input_size: usize,
    output_size: usize,
    input: Vec<u8>,
    /// `input[consumed..filled]` is read and not yet parsed.
    filled: usize,
    consumed: usize,
    /// Whether ureq's last parse consumed anything (its rule for reusing buffered input).
    progress: bool,
    output: Vec<u8>,
    pending: usize,
}

impl LinkBuffers {
    fn new(input_size: usize, output_size: usize) -> LinkBuffers {
        LinkBuffers {
            input_size: input_size.max(1),
            output_size: output_size.max(1),
            input: Vec::new(),
            filled: 0,
            consumed: 0,
            progress: false,
            output: Vec::new(),
            pending: 0,
        }
    }

    fn allocate_output(&mut self) {
        if self.output.is_empty() {
            self.output.resize(SMALL_OUTPUT.min(self.output_size), 0);
        }
    }

    /// Doubles the output buffer up to [`MEDIUM_OUTPUT`], then makes it `output_size` (a spare
    /// one when there is one): a small body gets only the room it needs, a big one leaves in
    /// few writes.
    fn grow_output(&mut self) {
        let len = self.output.len();
        let grown = if len < MEDIUM_OUTPUT {
            len * 2
        } else {
            self.output_size
        };
        let grown = grown.min(self.output_size);
        if grown <= len {
            return;
        }
        if grown == self.output_size && grown > MEDIUM_OUTPUT {
            let spare = SPARE_OUTPUTS.lock().pop();
            if let Some(mut spare) = spare.filter(|s| s.len() == grown) {
                let pending = self.pending.min(len);
                spare[..pending].copy_from_slice(&self.output[..pending]);
                self.output = spare;
                return;
            }
        }
        self.output.resize(grown, 0);
    }

    fn allocate_input(&mut self) {
        if self.input.is_empty() {
            self.input.resize(SMALL_INPUT.min(self.input_size), 0);
        }
    }

    /// Doubles the input buffer, to at most `limit` (and never past `input_size`).
    fn grow_input(&mut self, limit: usize) {
        let grown = (self.input.len() * 2).min(limit).min(self.input_size);
        if grown > self.input.len() {
            self.input.resize(grown, 0);
        }
    }

    /// Moves unparsed input to the front when that frees the more useful half.
    fn shift(&mut self) {
        if self.consumed == 0 {
            return;
        }
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        } else if self.filled > self.input.len() / 2 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
    }
}

impl Buffers for LinkBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.allocate_output();
        &mut self.output[self.pending..]
    }

    fn input(&self) -> &[u8] {
        &self.input[self.consumed..self.filled]
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.allocate_input();
        self.shift();
        if self.filled == self.input.len() {
            // Full of what ureq could not parse yet (a long response head): more room.
            self.grow_input(self.input_size);
        }
        &mut self.input[self.filled..]
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled = (self.filled + amount).min(self.input.len());
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed = (self.consumed + amount).min(self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        self.allocate_input();
        self.allocate_output();
        self.shift();
        if self.input.len() - self.filled < MIN_TMP {
            self.input.resize(self.filled + MIN_TMP, 0);
        }
        (
            &mut self.input[self.filled..],
            &mut self.output[self.pending..],
        )
    }

    fn can_use_input(&self) -> bool {
        self.progress && self.consumed < self.filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_kept_timeout_never_fires_early() {
        let s = Duration::from_secs;
        assert!(keeps(None, None));
        assert!(keeps(Some(s(60)), Some(s(60))));
        assert!(keeps(Some(s(60)), Some(s(60) - SLACK)));
        assert!(!keeps(
            Some(s(60)),
            Some(s(60) - SLACK - Duration::from_millis(1))
        ));
        assert!(!keeps(Some(s(59)), Some(s(60))), "shorter would fire early");
        assert!(!keeps(None, Some(s(1))));
        assert!(!keeps(Some(s(1)), None));
    }

    #[test]
    fn transmitted_bytes_wait_for_the_read_and_leave_in_one_write() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut link = UpstreamLink::new(stream, 1024, 1024);

        let head = b"POST / HTTP/1.1\r\n\r\n";
        link.buffers().output()[..head.len()].copy_from_slice(head);
        link.transmit_output(head.len(), NextTimeout::default())
            .unwrap();
        link.buffers().output()[..4].copy_from_slice(b"body");
        link.transmit_output(4, NextTimeout::default()).unwrap();
        assert_eq!(link.bufs.pending, head.len() + 4, "nothing sent yet");

        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 64];
            let n = server.read(&mut got).unwrap();
            server.write_all(b"ok").unwrap();
            got.truncate(n);
            got
        });
        assert!(link.await_input(NextTimeout::default()).unwrap());
        assert_eq!(link.buffers().input(), b"ok");
        assert_eq!(reader.join().unwrap(), b"POST / HTTP/1.1\r\n\r\nbody");
    }

    #[test]
    fn a_big_request_grows_the_buffer_then_goes_in_pieces_and_the_buffer_is_given_back() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let max = 4 * SMALL_OUTPUT;
        let mut link = UpstreamLink::new(stream, 64, max);
        assert_eq!(link.buffers().output().len(), SMALL_OUTPUT);
        link.transmit_output(SMALL_OUTPUT / 2 + 1, NextTimeout::default())
            .unwrap();
        assert_eq!(
            link.bufs.pending,
            SMALL_OUTPUT / 2 + 1,
            "kept, in a grown buffer"
        );
        assert_eq!(link.bufs.output.len(), 2 * SMALL_OUTPUT, "doubled");
        link.transmit_output(SMALL_OUTPUT, NextTimeout::default())
            .unwrap();
        assert_eq!(link.bufs.output.len(), max, "doubled again, to the limit");
        assert_eq!(link.bufs.pending, 3 * SMALL_OUTPUT / 2 + 1);
        link.transmit_output(max / 2, NextTimeout::default())
            .unwrap();
        assert_eq!(
            link.bufs.pending, 0,
            "past half of the largest buffer, sent"
        );
        link.transmit_output(10, NextTimeout::default()).unwrap();
        link.finish_request(NextTimeout::default()).unwrap();
        assert_eq!(link.bufs.pending, 0);
        assert!(link.bufs.output.is_empty(), "the buffer is given back");
        assert_eq!(link.buffers().output().len(), SMALL_OUTPUT);
    }

    /// A big request's full-size buffer is kept for the next big request, not zero-filled
    /// again; small and medium requests never take one.
    #[test]
    fn a_full_size_output_buffer_is_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let size = 3 * MEDIUM_OUTPUT + 8; // no other test uses this size
        let mut grown = Vec::new();
        for _ in 0..2 {
            let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let _server = listener.accept().unwrap();
            let mut link = UpstreamLink::new(stream, 64, size);
            while link.bufs.output.len() < size {
                let room = link.buffers().output().len();
                link.transmit_output(room, NextTimeout::default()).unwrap();
            }
            assert_eq!(link.bufs.output.len(), size);
            grown.push(link.bufs.output.as_ptr() as usize);
            link.finish_request(NextTimeout::default()).unwrap();
            assert!(link.bufs.output.is_empty());
        }
        assert_eq!(
            grown[0], grown[1],
            "the second request got the first one's buffer"
        );
    }

    #[test]
    fn sending_a_request_leaves_the_input_buffer_small() {
        let mut bufs = LinkBuffers::new(16 * SMALL_INPUT, 16 * SMALL_OUTPUT);
        let (tmp, output) = bufs.tmp_and_output();
        assert!(tmp.len() >= MIN_TMP && !output.is_empty());
        assert_eq!(
            bufs.input.len(),
            SMALL_INPUT,
            "no growth for the scratch area"
        );
        // With the input nearly full, the scratch area still has its minimum.
        bufs.filled = SMALL_INPUT - 10;
        let (tmp, _) = bufs.tmp_and_output();
        assert!(tmp.len() >= MIN_TMP);
    }

    #[test]
    fn the_input_buffer_grows_for_a_long_head_and_for_big_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut link = UpstreamLink::new(stream, 16 * SMALL_INPUT, 64);
        let head = vec![b'h'; 5 * SMALL_INPUT];
        server.write_all(&head).unwrap();
        // ureq's way: read until the head is complete, consuming nothing meanwhile.
        while link.buffers().input().len() < head.len() {
            assert!(link.await_input(NextTimeout::default()).unwrap());
        }
        assert_eq!(link.buffers().input(), &head[..]);
        assert!(link.bufs.input.len() >= head.len());
        assert!(link.bufs.input.len() <= 16 * SMALL_INPUT);

        // A fresh connection reading a big body grows only to READ_GROWTH_LIMIT by reads.
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut link = UpstreamLink::new(stream, 16 * SMALL_INPUT, 64);
        let body = vec![b'b'; 64 * 1024];
        let writer = std::thread::spawn(move || server.write_all(&body).unwrap());
        let mut got = 0;
        while got < 64 * 1024 {
            assert!(link.await_input(NextTimeout::default()).unwrap());
            let n = link.buffers().input().len();
            link.buffers().input_consume(n);
            got += n;
        }
        writer.join().unwrap();
        assert!(link.bufs.input.len() <= READ_GROWTH_LIMIT);
    }

    #[test]
    fn leftover_input_or_a_closed_peer_is_not_reusable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut link = UpstreamLink::new(stream, 64, 64);
        assert!(link.is_open(), "a fresh idle connection is open");

        server.write_all(b"extra").unwrap();
        assert!(link.await_input(NextTimeout::default()).unwrap());
        assert!(!link.is_open(), "unparsed bytes past a response");
        let n = link.buffers().input().len();
        link.buffers().input_consume(n);
        assert!(link.is_open());

        drop(server);
        link.last_io = None;
        // The FIN may take a moment to arrive on loopback.
        let deadline = Instant::now() + Duration::from_secs(5);
        while link.is_open() {
            assert!(Instant::now() < deadline, "a closed peer still looks open");
            link.last_io = None;
            std::thread::yield_now();
        }
    }
}
