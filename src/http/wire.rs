//! The byte pipe under one connection: a transport (plain TCP or rustls over TCP) with cached
//! socket timeouts, and the connection's reusable input buffer.
//!
//! State owned here: the last read timeout set on the socket (so the hot path makes no
//! `setsockopt` call when it would not change anything) and the bytes read but not yet
//! consumed (pipelined requests and body bytes that arrived with a head stay here).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Smallest timeout handed to the socket: zero would mean "block forever" to the OS.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// What the connection code needs from a transport besides `Read + Write`.
pub(crate) trait Wire: Read + Write {
    /// Sets the read timeout for the next reads (skipped when unchanged).
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Ends our sending side (after a TLS close_notify, if any) so a refusal is delivered
    /// before we close.
    fn shutdown_write(&mut self);
}

/// The socket underneath a transport, for timeouts and shutdown.
pub(crate) trait Socket: Read + Write + Send {
    fn tcp(&self) -> &TcpStream;
    /// Called before the write side is shut; TLS sends close_notify here.
    fn close_notify(&mut self) {}
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// A transport plus the read timeout currently set on its socket.
pub(crate) struct Link<T: Socket> {
    pub io: T,
    read_timeout: Option<Duration>,
}

impl<T: Socket> Link<T> {
    pub fn new(io: T) -> Self {
        Link {
            io,
            read_timeout: None,
        }
    }
}

impl<T: Socket> Read for Link<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf)
    }
}

impl<T: Socket> Write for Link<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

impl<T: Socket> Wire for Link<T> {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = timeout.max(MIN_TIMEOUT);
        if self.read_timeout != Some(timeout) {
            self.io.tcp().set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        Ok(())
    }

    fn shutdown_write(&mut self) {
        self.io.close_notify();
        let _ = self.io.flush();
        let _ = self.io.tcp().shutdown(Shutdown::Write);
    }
}

/// Time left until `deadline`, or a timeout error when it has passed.
pub(crate) fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
    } else {
        Ok(left)
    }
}

/// True for the errors a socket read timeout produces.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The smallest buffer a connection reads into once bytes arrive.
const START_SIZE: usize = 4096;
/// The most a released buffer's first read takes, into a stack array.
const FIRST_READ: usize = 1024;

/// One read, retried when interrupted.
fn read_once(wire: &mut dyn Wire, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match wire.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Bytes read from the transport and not yet consumed: `buf[start..end]`.
pub(crate) struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    pub fn with_capacity(cap: usize) -> Self {
        InBuf {
            buf: vec![0; cap],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` bytes (at most `len()`) as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The bytes of memory the buffer holds.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Gives the memory back when nothing is buffered (it grows again on the next `fill`).
    pub fn release_if_empty(&mut self) {
        if self.is_empty() {
            *self = InBuf::with_capacity(0);
        }
    }

    /// Forgets everything buffered (a connection that will be closed).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads once from `wire` so that up to `max_len` unconsumed bytes can be held, growing
    /// the buffer no further than that. Returns the number of new bytes (0 = EOF), or an
    /// `OutOfMemory`-kind error when `max_len` bytes are already buffered.
    pub fn fill(&mut self, wire: &mut dyn Wire, max_len: usize) -> io::Result<usize> {
        if self.len() >= max_len {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer limit"));
        }
        if self.buf.is_empty() {
            return self.fill_released(wire, max_len);
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // start == 0 here and end < max_len, so this grows the buffer.
            let grown = (self.buf.len() * 2).max(START_SIZE).min(max_len);
            self.buf.resize(grown, 0);
        }
        let room_end = self.buf.len().min(self.start + max_len);
        let n = read_once(wire, &mut self.buf[self.end..room_end])?;
        self.end += n;
        Ok(n)
    }

    /// The first read into a released buffer goes through the stack, so a connection that
    /// waits for its next request (or its close) after a stream holds no buffer until bytes
    /// arrive: 4 KiB each for 1000 streams ending together was a 4 MiB jump in memory.
    fn fill_released(&mut self, wire: &mut dyn Wire, max_len: usize) -> io::Result<usize> {
        let mut first = [0u8; FIRST_READ];
        let n = read_once(wire, &mut first[..FIRST_READ.min(max_len)])?;
        if n > 0 {
            self.buf = vec![0; START_SIZE.min(max_len).max(n)];
            self.buf[..n].copy_from_slice(&first[..n]);
            self.start = 0;
            self.end = n;
        }
        Ok(n)
    }
}
