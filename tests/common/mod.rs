//! Shared helpers for integration tests.

pub mod fake_upstream;
pub mod gateway;
