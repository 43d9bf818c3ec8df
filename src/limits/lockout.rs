//! Lockout placeholder
