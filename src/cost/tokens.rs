//! What one exchange used, as the usage log records it and the price table prices it: token
//! counts (cache reads and writes among the prompt's) and a cost the upstream reported
//! itself. Read from the upstreams' own usage objects by [`crate::translate::usage`].
//! Owns no state.

use super::Usd;

/// Token counts of one exchange, as recorded in the usage log, and the cost the upstream
/// reported for it, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every input token, those read from or written to the prompt cache included.
    pub prompt_tokens: u64,
    /// Every output token, reasoning included.
    pub completion_tokens: u64,
    /// The part of `prompt_tokens` read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// The part of `prompt_tokens` written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// The part of `cache_write_tokens` written to Anthropic's 1-hour cache (priced apart).
    pub cache_write_1h_tokens: u64,
    /// The cost the upstream reported itself (OpenRouter's `usage.cost`).
    pub reported_cost: Option<Usd>,
}

impl Usage {
    /// Folds in a later report of the same exchange (Anthropic's `message_start`, then
    /// `message_delta`): its counts are cumulative, so each counter keeps the larger value.
    pub fn absorb(&mut self, later: Usage) {
        self.prompt_tokens = self.prompt_tokens.max(later.prompt_tokens);
        self.completion_tokens = self.completion_tokens.max(later.completion_tokens);
        self.cache_read_tokens = self.cache_read_tokens.max(later.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.max(later.cache_write_tokens);
        self.cache_write_1h_tokens = self.cache_write_1h_tokens.max(later.cache_write_1h_tokens);
        self.reported_cost = later.reported_cost.or(self.reported_cost);
    }

    /// Input tokens neither read from nor written to the cache.
    pub fn uncached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}
