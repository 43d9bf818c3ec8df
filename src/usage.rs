//! Usage records: one JSON line per request, appended durably.
