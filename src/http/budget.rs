//! The bound on request-body memory held at once across all connections
//! (`max_buffered_bytes`): `max_body_bytes` bounds one body, but a thousand connections each
//! sending a 64 MiB body would otherwise need 64 GiB.
//!
//! A request reserves its declared `Content-Length` before its handler runs (so an
//! oversized moment is refused with 503 before the client sends the body), a chunked body
//! as its bytes arrive, and a handler may reserve working memory on top
//! ([`super::Request::reserve_extra`]): translating a body builds values several times its
//! size. Everything a request reserved is given back when its handler returns, by the
//! [`Reservation`]'s `Drop`, so no early return or panic can leak budget.
//!
//! State owned here: [`Budget`], one atomic count of reserved bytes per server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::HttpError;

/// Bytes reserved across all requests, never above `max`.
#[derive(Debug)]
pub(crate) struct Budget {
    max: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes if they fit; all or nothing.
    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// What one request holds of the budget; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    held: u64,
}

impl Reservation {
    /// Holds nothing yet.
    pub fn new(budget: Arc<Budget>) -> Reservation {
        Reservation { budget, held: 0 }
    }

    /// Holds `n` more bytes, or fails (holding what it held before) when they do not fit.
    pub fn grow(&mut self, n: u64) -> Result<(), HttpError> {
        if n == 0 {
            return Ok(());
        }
        if !self.budget.take(n) {
            return Err(HttpError::Overloaded);
        }
        self.held += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn reservations_fit_the_bound_and_give_back_on_drop() {
        let budget = Arc::new(Budget::new(100));
        let mut a = Reservation::new(Arc::clone(&budget));
        a.grow(60).unwrap();
        let mut b = Reservation::new(Arc::clone(&budget));
        assert_eq!(b.grow(41), Err(HttpError::Overloaded), "all or nothing");
        assert_eq!(budget.used(), 60);
        b.grow(40).unwrap();
        assert_eq!(b.grow(1), Err(HttpError::Overloaded));
        b.grow(0).unwrap();
        drop(a);
        assert_eq!(budget.used(), 40);
        b.grow(60).unwrap();
        drop(b);
        assert_eq!(budget.used(), 0);
        let mut c = Reservation::new(Arc::clone(&budget));
        assert!(c.grow(u64::MAX).is_err(), "no overflow");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_panic_gives_the_reservation_back() {
        let budget = Arc::new(Budget::new(100));
        let b = Arc::clone(&budget);
        let r = thread::spawn(move || {
            let mut r = Reservation::new(b);
            r.grow(100).unwrap();
            panic!("handler bug");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_bound() {
        let budget = Arc::new(Budget::new(1000));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = Arc::clone(&budget);
                thread::spawn(move || {
                    for _ in 0..1000 {
                        let mut r = Reservation::new(Arc::clone(&budget));
                        let _ = r.grow(300);
                        assert!(budget.used() <= 1000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.used(), 0);
    }
}
