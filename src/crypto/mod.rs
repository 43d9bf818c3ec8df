//! Key material: gateway API keys, the master key and `enc:v1` provider secrets, the admin
//! password hash. Everything secret lives in types that redact `Debug` and zeroize on drop.

pub mod apikey;
pub mod password;
pub mod secret;
