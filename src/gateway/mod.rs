//! The gateway: auth, routing, handlers, usage.

pub mod error;
pub mod rewrite;

use std::path::Path;

/// Runs `noviqi serve` on the config at `path` until SIGTERM/SIGINT.
pub fn run(path: &Path) -> Result<(), String> {
    Err(format!("serve is not implemented yet ({})", path.display()))
}
