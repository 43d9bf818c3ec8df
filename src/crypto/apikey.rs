//! Gateway API keys: `nvq_` + base64url(32 random bytes), stored only as `sha256:<hex>`.

/// SHA-256 of a whole key string; the only form a key is stored in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash(sha256:{})", hex::encode(self.0))
    }
}
