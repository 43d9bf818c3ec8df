//! Argon2id hashing of the admin password.
