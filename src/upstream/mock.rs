//! The built-in `mock` provider: no network, no account. It speaks the OpenAI wire format
//! (the gateway translates for Anthropic-format clients) and echoes the last user message,
//! streamed in several chunks, with usage counted as whitespace-separated words. Owns no state.

use std::io::Cursor;

use serde_json::{Value, json};

use super::{Method, UpstreamError, UpstreamRequest, UpstreamResponse};

pub struct Mock;

/// How many content chunks a streamed echo is cut into, at most.
const MAX_CHUNKS: usize = 8;

impl super::Provider for Mock {
    fn send(&self, request: &UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        let path = request.path.split('?').next().unwrap_or(request.path);
        let body: Value = if request.method == Method::Post {
            match serde_json::from_slice(request.body) {
                Ok(v) => v,
                Err(_) => return Ok(error(400, "request body is not valid JSON")),
            }
        } else {
            Value::Null
        };
        let model = body["model"].as_str().unwrap_or("echo").to_owned();
        Ok(match (request.method, path) {
            (Method::Post, "/chat/completions") => chat(&body, &model),
            (Method::Post, "/completions") => completion(&body, &model),
            (Method::Post, "/embeddings") => embeddings(&body, &model),
            (Method::Get, "/models") => json_response(
                200,
                &json!({"object": "list", "data": [
                    {"id": "echo", "object": "model", "created": 0, "owned_by": "noviqi-mock"}
                ]}),
            ),
            _ => error(404, "the mock provider does not serve this endpoint"),
        })
    }
}

fn chat(body: &Value, model: &str) -> UpstreamResponse {
    let prompt = last_user_text(body);
    let prompt_tokens = words(&all_text(&body["messages"]));
    let usage = usage(prompt_tokens, words(&prompt));
    if body["stream"].as_bool() == Some(true) {
        let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
        let base = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                   "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut events = vec![base(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for piece in pieces(&prompt) {
            events.push(base(json!({"content": piece}), Value::Null));
        }
        events.push(base(json!({}), json!("stop")));
        if include_usage {
            events.push(
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                               "created": 0, "model": model, "choices": [], "usage": usage}),
            );
        }
        return sse(&events);
    }
    json_response(
        200,
        &json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": prompt}}],
            "usage": usage,
        }),
    )
}

fn completion(body: &Value, model: &str) -> UpstreamResponse {
    let prompt = match &body["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .first()
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    };
    let usage = usage(words(&prompt), words(&prompt));
    if body["stream"].as_bool() == Some(true) {
        let mut events: Vec<Value> = pieces(&prompt)
            .into_iter()
            .map(|piece| {
                json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
                       "model": model, "choices": [{"index": 0, "text": piece, "finish_reason": null}]})
            })
            .collect();
        events.push(json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
                           "model": model, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}));
        if body["stream_options"]["include_usage"].as_bool() == Some(true) {
            events.push(
                json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
                               "model": model, "choices": [], "usage": usage}),
            );
        }
        return sse(&events);
    }
    json_response(
        200,
        &json!({
            "id": "cmpl-mock", "object": "text_completion", "created": 0, "model": model,
            "choices": [{"index": 0, "text": prompt, "finish_reason": "stop", "logprobs": null}],
            "usage": usage,
        }),
    )
}

/// Deterministic 8-dimensional vectors derived from the input's bytes.
fn embeddings(body: &Value, model: &str) -> UpstreamResponse {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => return error(400, "'input' must be a string or an array"),
    };
    let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut v = [0f64; 8];
            for (i, b) in text.bytes().enumerate() {
                v[i % 8] += f64::from(b) / 255.0;
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
            let v: Vec<f64> = v.iter().map(|x| x / norm).collect();
            json!({"object": "embedding", "index": index, "embedding": v})
        })
        .collect();
    json_response(
        200,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// The text of the last `user` message (string content or its text parts).
fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default()
}

fn all_text(messages: &Value) -> String {
    messages
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| content_text(&m["content"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

/// Cuts `text` into at most `MAX_CHUNKS` pieces at character boundaries; concatenated they
/// give `text` back.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(MAX_CHUNKS).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn sse(events: &[Value]) -> UpstreamResponse {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(event.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    UpstreamResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: Box::new(Cursor::new(out)),
    }
}

fn json_response(status: u16, value: &Value) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Box::new(Cursor::new(value.to_string().into_bytes())),
    }
}

fn error(status: u16, message: &str) -> UpstreamResponse {
    json_response(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error",
                          "param": null, "code": null}}),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::upstream::Provider;

    fn post(path: &'static str, body: Value) -> (u16, String) {
        let body = body.to_string();
        let mut response = Mock
            .send(&UpstreamRequest {
                method: Method::Post,
                path,
                headers: &[],
                body: body.as_bytes(),
            })
            .unwrap();
        let mut text = String::new();
        response.body.read_to_string(&mut text).unwrap();
        (response.status, text)
    }

    #[test]
    fn echoes_the_last_user_message() {
        let (status, text) = post(
            "/chat/completions",
            json!({"model": "echo", "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "hello there"}]}),
        );
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello there");
        assert_eq!(v["usage"]["completion_tokens"], 2);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
    }

    #[test]
    fn streams_in_chunks_that_reassemble() {
        let (_, text) = post(
            "/chat/completions",
            json!({"model": "echo", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}]}),
        );
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"));
        let mut joined = String::new();
        let mut saw_usage = false;
        for d in &datas[..datas.len() - 1] {
            let v: Value = serde_json::from_str(d).unwrap();
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                joined.push_str(c);
            }
            saw_usage |= v["usage"]["completion_tokens"] == 10;
        }
        assert!(datas.len() > 4);
        assert_eq!(joined, "one two three four five six seven eight nine ten");
        assert!(saw_usage);
    }

    #[test]
    fn embeddings_and_unknown_paths() {
        let (status, text) = post("/embeddings", json!({"model": "e", "input": ["a b", "c"]}));
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(post("/nope", json!({})).0, 404);
        assert_eq!(post("/embeddings", json!({"input": 3})).0, 400);
    }
}
