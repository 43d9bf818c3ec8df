//! Configuration: one TOML file parsed into raw serde structs (`raw`), lifted once into the
//! typed, validated `model` by `load`; `edit` rewrites the file keeping comments and layout.

pub mod model;

pub use model::Config;
