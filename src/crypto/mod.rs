//! Key material: gateway API keys, the master key and `enc:v1` provider secrets, the admin
//! password hash. Everything secret lives in types that redact `Debug` and zeroize on drop.
//! This module owns no state; randomness comes from the OS CSPRNG on every call.

pub mod apikey;
pub mod password;
pub mod secret;

/// Fills `buf` from the operating system's CSPRNG (getrandom(2) on Linux).
///
/// `UnwrapErr` panics if the OS refuses randomness, which on supported platforms only happens
/// before the kernel's pool is initialised at early boot; continuing without randomness would
/// be worse than stopping, and no request input can reach that condition.
pub(crate) fn fill_random(buf: &mut [u8]) {
    use rand::TryRngCore as _;
    use rand::rngs::OsRng;
    rand::RngCore::fill_bytes(&mut OsRng.unwrap_err(), buf);
}
