//! The process's log: env_logger's filter (`RUST_LOG`, default `info`) and layout, written to
//! standard error one whole line per `write`.
//!
//! Every proxied request logs an access line, so the logger is on the request path. env_logger
//! writes through the standard error lock, held across the system call, and its default layout
//! formats a calendar date per line; with one thread per connection both showed up as lock
//! waits and instructions per request. Here a line is formatted into a per-thread buffer and
//! written on a duplicate of the standard error descriptor, which takes no lock: one `write`
//! of a whole line is atomic for a pipe (lines are far below `PIPE_BUF`) and for a file.
//!
//! State owned here: the global logger (filter and descriptor), and per thread its line buffer.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use log::Log;

use crate::clock::Stamp;

struct StderrLog {
    filter: env_logger::Logger,
    /// A duplicate of fd 2; `None` if it could not be made (then the locked `stderr`).
    out: Option<File>,
}

/// Installs the logger (once; later calls do nothing).
pub fn init() {
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = filter.filter();
    let out = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from);
    if log::set_boxed_logger(Box::new(StderrLog { filter, out })).is_ok() {
        log::set_max_level(max);
    }
}

/// Crates whose `trace` output holds whole requests, credentials included (ureq dumps the
/// upstream request with its `authorization` and `x-api-key` headers): capped at `debug`
/// whatever `RUST_LOG` says.
const CAPPED_AT_DEBUG: &[&str] = &["ureq", "ureq_proto", "rustls"];

/// Whether `target` is one of [`CAPPED_AT_DEBUG`] or a module inside one.
fn capped(target: &str) -> bool {
    CAPPED_AT_DEBUG.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The filter, less what [`CAPPED_AT_DEBUG`] keeps out.
fn allowed(filter: &env_logger::Logger, metadata: &log::Metadata<'_>) -> bool {
    if metadata.level() > log::Level::Debug && capped(metadata.target()) {
        return false;
    }
    filter.enabled(metadata)
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        allowed(&self.filter, metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !allowed(&self.filter, record.metadata()) {
            return;
        }
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with(|line| {
            // A log call from inside a `Display` of a logged value would re-enter: write
            // that one line unbuffered rather than panic on the borrow.
            let Ok(mut line) = line.try_borrow_mut() else {
                let _ = format_line(&mut io::stderr().lock(), record);
                return;
            };
            line.clear();
            if format_line(&mut *line, record).is_err() {
                return;
            }
            let _ = match &self.out {
                Some(file) => (&*file).write_all(&line),
                None => io::stderr().lock().write_all(&line),
            };
            if line.capacity() > 64 * 1024 {
                *line = Vec::new();
            }
        });
    }

    fn flush(&self) {}
}

/// `[2026-01-02T03:04:05Z INFO  noviqi::gateway::proxy] message`: env_logger's own layout.
fn format_line(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    let level = match record.level() {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN ",
        log::Level::Info => "INFO ",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    };
    writeln!(
        out,
        "[{}Z {level} {}] {}",
        Stamp::now().second(),
        record.target(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_of_http_and_tls_crates_is_capped_at_debug() {
        let filter = env_logger::Builder::new().parse_filters("trace").build();
        let at = |level, target| {
            allowed(
                &filter,
                &log::Metadata::builder().level(level).target(target).build(),
            )
        };
        for target in [
            "ureq",
            "ureq::unversioned::transport",
            "ureq_proto::client",
            "rustls",
        ] {
            assert!(!at(log::Level::Trace, target), "{target}");
            assert!(at(log::Level::Debug, target), "{target}");
        }
        assert!(at(log::Level::Trace, "noviqi::gateway"));
        assert!(at(log::Level::Trace, "ureqx"));
    }

    #[test]
    fn lines_have_env_loggers_layout() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            &log::Record::builder()
                .args(format_args!("POST /v1/chat/completions 200"))
                .level(log::Level::Info)
                .target("noviqi::gateway::proxy")
                .build(),
        )
        .unwrap();
        let line = String::from_utf8(out).unwrap();
        let (stamp, rest) = line.split_at(21);
        assert!(stamp.starts_with('[') && stamp.ends_with('Z'), "{line}");
        assert_eq!(
            rest,
            " INFO  noviqi::gateway::proxy] POST /v1/chat/completions 200\n"
        );
    }
}
