//! noviqi: a self-hosted AI gateway in one binary and one TOML file.
//!
//! Clients speaking OpenAI's or Anthropic's API authenticate with a gateway key, pass rate
//! limits and lockouts, and are routed by model name to an upstream provider whose credential
//! is stored encrypted in the config. See `ARCHITECTURE.md` for the request lifecycle.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod clientip;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod cost;
pub mod crypto;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod glob;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod routing;
pub mod sse;
pub mod translate;
pub mod upstream;
pub mod usage;
