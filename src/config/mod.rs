//! Configuration: one TOML file parsed into raw serde structs (`raw`), lifted once into the
//! typed, validated `model` by `load`; `edit` rewrites the file keeping comments and layout; `rotate` replaces the master key.

pub mod cluster;
pub mod edit;
mod error;
pub mod load;
pub mod model;
pub mod raw;
pub mod rotate;

pub use error::ConfigError;
pub use load::{Secrets, load, load_str};
pub use model::Config;
