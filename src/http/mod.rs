//! Our own small HTTP/1.1 server layer (see PRODUCT.md for why not tiny_http). Knows nothing
//! about LLMs.
