//! One liveness probe per pooled upstream connection reuse instead of two.
//!
//! ureq probes a connection (non-blocking mode on, a one-byte read that must would-block,
//! blocking mode off: three system calls) both when it returns to the pool after a response
//! and again when it is taken out for the next request. Under load the two probes are
//! microseconds apart and the second one learns nothing new, yet they were a quarter of the
//! gateway's system calls per request. [`ProbeOnce`] wraps every transport so that a probe
//! which succeeded less than [`FRESH`] ago, with no I/O since, is answered from memory. The
//! probe after a response (which also catches bytes sent past the body) always runs; an idle
//! connection older than [`FRESH`] is probed as before.
//!
//! State owned here: per connection, when its last successful probe ran.

use std::time::{Duration, Instant};

use ureq::Error;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

/// How long a successful probe with no I/O after it stands for the connection's state.
pub(crate) const FRESH: Duration = Duration::from_millis(100);

/// Chained after ureq's default connector: wraps each new transport in [`Probed`].
#[derive(Debug, Default)]
pub(crate) struct ProbeOnce;

impl Connector<Box<dyn Transport>> for ProbeOnce {
    type Out = Probed;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Probed>, Error> {
        Ok(chained.map(|inner| Probed {
            inner,
            probed_ok: None,
        }))
    }
}

#[derive(Debug)]
pub(crate) struct Probed {
    inner: Box<dyn Transport>,
    /// When the last probe found the connection open; cleared by any I/O.
    probed_ok: Option<Instant>,
}

impl Transport for Probed {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        self.probed_ok = None;
        self.inner.transmit_output(amount, timeout)
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.probed_ok = None;
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.probed_ok = None;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        let now = Instant::now();
        if self
            .probed_ok
            .is_some_and(|at| now.duration_since(at) < FRESH)
        {
            return true;
        }
        let open = self.inner.is_open();
        self.probed_ok = open.then_some(now);
        open
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}
