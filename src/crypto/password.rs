//! Argon2id hashing of the admin password, as PHC strings (`$argon2id$v=19$m=…`), and its
//! verification in memory that is allocated once and reused.
//!
//! Each hash gets a fresh random salt from the OS CSPRNG. A [`Verifier`] owns the Argon2 block
//! memory (`m` KiB of the PHC string: 19 MiB for the defaults). argon2's own `verify_password`
//! allocates that memory on every call, and glibc keeps what each thread freed in that
//! thread's arena, so concurrent logins on many pool threads grew the process by `m` per
//! thread; a verifier reuses one buffer, and the dashboard keeps one verifier, so memory is
//! bounded however many logins arrive. The buffer is zeroed after every verification (it is
//! derived from the password).

use argon2::password_hash::{Output, Salt};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Hashing failed (argon2's own error; the password never appears in it).
#[derive(Debug)]
pub struct PasswordError(String);

impl std::fmt::Display for PasswordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot hash the password: {}", self.0)
    }
}

impl std::error::Error for PasswordError {}

/// Argon2id (default parameters) PHC string of `password`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    super::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (any Argon2 variant); the comparison is
/// constant time. An unparsable `phc` never matches. Allocates the Argon2 memory for this one
/// call: for repeated verifications keep a [`Verifier`].
pub fn verify(password: &str, phc: &str) -> bool {
    Verifier::default().verify(password, phc)
}

/// Verifies passwords in one Argon2 block buffer that it keeps between calls. Not `Sync`
/// by itself; put it behind a lock, one verification at a time.
#[derive(Default)]
pub struct Verifier {
    blocks: Vec<Block>,
}

impl Verifier {
    /// Whether `password` matches the PHC string `phc`, as [`verify`]. The buffer grows to the
    /// PHC's memory cost the first time and is reused after that; it is zeroed before this
    /// returns. When that memory cannot be reserved the answer is `false` and a line is
    /// logged (about the size, never the password).
    pub fn verify(&mut self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Some(argon2) = hasher(&parsed) else {
            return false;
        };
        let matched = self.compute(&argon2, password, salt, &expected);
        for block in &mut self.blocks {
            block.as_mut().zeroize();
        }
        matched
    }

    /// Hashes `password` with `argon2` and `salt` into this verifier's memory and compares
    /// the result with `expected` in constant time.
    fn compute(
        &mut self,
        argon2: &Argon2<'_>,
        password: &str,
        salt: Salt<'_>,
        expected: &Output,
    ) -> bool {
        let mut salt_bytes = Zeroizing::new([0u8; Salt::MAX_LENGTH]);
        let Ok(salt) = salt.decode_b64(&mut salt_bytes[..]) else {
            return false;
        };
        let count = argon2.params().block_count();
        if let Some(more) = count.checked_sub(self.blocks.len()) {
            if self.blocks.try_reserve_exact(more).is_err() {
                log::error!(
                    "cannot reserve {} MiB for the Argon2 password verification",
                    count / 1024
                );
                return false;
            }
            self.blocks.resize(count, Block::default());
        }
        let mut out = Zeroizing::new([0u8; Output::MAX_LENGTH]);
        let Some(out) = out.get_mut(..expected.len()) else {
            return false;
        };
        if argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut self.blocks)
            .is_err()
        {
            return false;
        }
        out.ct_eq(expected.as_bytes()).into()
    }

    /// Bytes of Argon2 memory held.
    #[cfg(test)]
    fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * Block::SIZE
    }
}

/// The Argon2 instance a PHC string names: algorithm, version (default 0x13) and parameters
/// (output length included).
fn hasher(parsed: &PasswordHash<'_>) -> Option<Argon2<'static>> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    Some(Argon2::new(algorithm, version, params))
}

/// Whether `phc` parses as an Argon2id PHC string with a salt and a hash.
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        h.algorithm == Algorithm::Argon2id.ident() && h.salt.is_some() && h.hash.is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(is_argon2id_phc(&phc));
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong", &phc));
        assert!(!verify("correct horse", "garbage"));
        assert_ne!(phc, hash("correct horse").unwrap());
        assert!(!is_argon2id_phc(
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
        assert!(!is_argon2id_phc("$argon2id$"));
    }

    /// A cheap PHC string (64 KiB, one pass) made by argon2 itself.
    fn small_phc(algorithm: Algorithm, m_kib: u32, password: &str) -> String {
        let params = Params::new(m_kib, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn verifier_reuses_one_buffer_and_zeroes_it() {
        let phc = small_phc(Algorithm::Argon2id, 64, "pw");
        let mut verifier = Verifier::default();
        assert_eq!(verifier.memory_bytes(), 0, "nothing before the first login");
        assert!(verifier.verify("pw", &phc));
        let (ptr, bytes) = (verifier.blocks.as_ptr(), verifier.memory_bytes());
        assert_eq!(bytes, 64 * 1024, "sized from the PHC's m");
        for attempt in ["wrong", "pw", "", "pw "] {
            assert_eq!(
                verifier.verify(attempt, &phc),
                attempt == "pw",
                "{attempt:?}"
            );
            assert_eq!(verifier.blocks.as_ptr(), ptr, "the buffer was reallocated");
            assert_eq!(verifier.memory_bytes(), bytes);
        }
        assert!(
            verifier
                .blocks
                .iter()
                .all(|b| b.as_ref().iter().all(|&w| w == 0)),
            "password-derived memory left behind"
        );
        // A smaller hash (say, after a reload) runs in the same buffer; a larger one grows it.
        assert!(verifier.verify("pw", &small_phc(Algorithm::Argon2id, 32, "pw")));
        assert_eq!(verifier.blocks.as_ptr(), ptr);
        assert!(verifier.verify("pw", &small_phc(Algorithm::Argon2id, 128, "pw")));
        assert_eq!(verifier.memory_bytes(), 128 * 1024);
    }

    #[test]
    fn verifier_agrees_with_argon2() {
        let mut verifier = Verifier::default();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let phc = small_phc(algorithm, 64, "pässword");
            let parsed = PasswordHash::new(&phc).unwrap();
            for attempt in ["pässword", "password", ""] {
                use argon2::password_hash::PasswordVerifier;
                let theirs = Argon2::default()
                    .verify_password(attempt.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(
                    verifier.verify(attempt, &phc),
                    theirs,
                    "{algorithm} {attempt:?}"
                );
            }
        }
        // Unparsable, hash-less, salt-less or tampered strings never match.
        let phc = small_phc(Algorithm::Argon2id, 64, "pw");
        let (head, hash) = phc.rsplit_once('$').unwrap();
        let (no_hash, _) = head.rsplit_once('$').unwrap();
        let mut flipped = hash.to_owned();
        flipped.replace_range(..1, if hash.starts_with('A') { "B" } else { "A" });
        for bad in [
            "garbage".to_owned(),
            head.to_owned(),
            format!("{no_hash}${hash}"),
            format!("{head}${flipped}"),
            phc.replace("m=64", "m=65"),
            phc.replace("v=19", "v=18"),
            phc.replace("argon2id", "scrypt"),
        ] {
            assert!(!verifier.verify("pw", &bad), "{bad}");
        }
        assert!(verifier.verify("pw", &phc));
    }
}
