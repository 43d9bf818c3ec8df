//! Incremental Server-Sent Events parser and writer.
