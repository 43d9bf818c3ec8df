//! The gateway: auth, routing, handlers, usage.
