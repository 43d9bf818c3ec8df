//! Upstream providers: the wire protocol behind one trait.
