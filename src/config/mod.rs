//! Configuration: one TOML file parsed into raw serde structs (`raw`), lifted once into the
//! typed, validated `model` by `load`; `edit` rewrites the file keeping comments and layout.

pub mod edit;
mod error;
pub mod load;
pub mod model;
pub mod raw;

pub use error::ConfigError;
pub use load::{Secrets, load, load_str};
pub use model::Config;
