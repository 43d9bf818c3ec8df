//! Sliding-window rate limits and brute-force lockouts.
