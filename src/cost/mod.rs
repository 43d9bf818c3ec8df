//! What requests cost: money as exact integers ([`Usd`]), the price table in force (built-in
//! list prices in [`builtin`], `[[prices]]` overrides, a cost the upstream reports itself),
//! and the cost of one request from its token counts ([`price`]).

pub mod builtin;
pub mod money;
pub mod period;
pub mod price;
pub mod pricing;
pub mod spend;
mod tokens;

pub use money::Usd;
pub use period::Period;
pub use price::{Price, PriceRule};
pub use pricing::{Answerer, Pricing, Source, cost_of};
pub use tokens::Usage;
