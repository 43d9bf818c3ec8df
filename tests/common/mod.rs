//! Shared helpers for integration tests.

// Helpers fail loudly: a broken fixture should stop the test, not hide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake_upstream;
pub mod gateway;
