//! Translation between the OpenAI and Anthropic wire formats, as pure functions.
