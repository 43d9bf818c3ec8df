//! The real client address: the socket peer, or X-Forwarded-For from a trusted proxy.
