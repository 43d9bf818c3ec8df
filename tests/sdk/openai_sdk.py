"""The official `openai` Python SDK against noviqi, used unchanged (base_url + api_key).

Run by tests/sdk.rs. Settings come from the environment:
  NOVIQI_BASE_URL   e.g. http://127.0.0.1:PORT/v1
  NOVIQI_KEY        a gateway key allowed every model
  NOVIQI_LIMITED_KEY a key allowed one request per minute
  NOVIQI_CHAT_MODEL the gateway model name to chat with
  NOVIQI_EMBED_MODEL (optional) an embeddings model; skipped when unset (anthropic upstreams)
  NOVIQI_MODELS     comma-separated names /v1/models must list
  NOVIQI_UPSTREAM_KIND  "openai" or "anthropic": what the fake upstream counts as tokens
  NOVIQI_RESPONSES  "1" to also check the Responses API (openai-kind upstreams)
Exits non-zero (with a traceback) on the first failed check; prints one line per check.
"""

import os
import sys

import openai

BASE = os.environ["NOVIQI_BASE_URL"]
KEY = os.environ["NOVIQI_KEY"]
CHAT = os.environ["NOVIQI_CHAT_MODEL"]
EMBED = os.environ.get("NOVIQI_EMBED_MODEL")
RESPONSES = os.environ.get("NOVIQI_RESPONSES") == "1"
MODELS = [m for m in os.environ.get("NOVIQI_MODELS", "").split(",") if m]
KIND = os.environ["NOVIQI_UPSTREAM_KIND"]
PROMPT = "Say hello to noviqi"
# The fakes count words: OpenAI's prompt = the messages' words; Anthropic's input = words + 3.
PROMPT_TOKENS = 4 if KIND == "openai" else 7
COMPLETION_TOKENS = 6
EXPECTED = "You said: " + PROMPT

client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)

def function_tool(name, description):
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }


TOOLS = [function_tool("get_weather", "Current weather in a city")]
TOOLS2 = TOOLS + [function_tool("get_time", "Local time in a city")]


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


def chat_non_stream():
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
        temperature=0.2,
        max_completion_tokens=64,
    )
    check("x-request-id header", bool(raw.headers.get("x-request-id")), dict(raw.headers))
    r = raw.parse()
    check("chat non-stream text", r.choices[0].message.content == EXPECTED, repr(r))
    check("chat non-stream finish", r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    check("chat non-stream object", r.object == "chat.completion", r.object)
    check("chat non-stream usage", r.usage is not None and r.usage.prompt_tokens > 0
          and r.usage.completion_tokens > 0, repr(r.usage))


def chat_image():
    pixel = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
             "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": pixel}},
        {"type": "text", "text": PROMPT},
    ]}])
    check("chat with an image", r.choices[0].message.content == EXPECTED, repr(r))


def chat_stream():
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    text, finish, chunks, ids = "", None, 0, set()
    for chunk in stream:
        chunks += 1
        ids.add(chunk.id)
        if chunks == 1:
            check("first chunk role", chunk.choices[0].delta.role == "assistant", repr(chunk))
        check_obj = chunk.object == "chat.completion.chunk"
        if not check_obj:
            raise AssertionError(f"chunk object: {chunk!r}")
        if chunk.usage is not None or not chunk.choices:
            raise AssertionError(f"usage chunk without include_usage: {chunk!r}")
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check("chat stream text", text == EXPECTED, repr(text))
    check("chat stream finish", finish == "stop", repr(finish))
    check("chat stream several chunks", chunks > 2, chunks)
    check("chat stream one id", len(ids) == 1, ids)


def chat_stream_usage():
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            check("usage chunk has no choices", chunk.choices == [], repr(chunk))
        for choice in chunk.choices:
            text += choice.delta.content or ""
    check("chat stream+usage text", text == EXPECTED, repr(text))
    check("chat stream+usage usage", usage is not None
          and (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
          and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, repr(usage))


def tools_round_trip(stream, tools):
    """Text plus one call per tool (parallel when two), results sent back, final answer."""
    import json
    label = ("stream " if stream else "") + f"{len(tools)} tool(s)"
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        calls, finish, text = {}, None, ""
        for chunk in client.chat.completions.create(
            model=CHAT, messages=messages, tools=tools, stream=True
        ):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                text += choice.delta.content or ""
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
        check(f"{label}: tool_calls indices 0..n", sorted(calls) == list(range(len(tools))),
              repr(calls))
        tool_calls = [{"id": c["id"], "type": "function",
                       "function": {"name": c["name"], "arguments": c["arguments"]}}
                      for _, c in sorted(calls.items())]
    else:
        r = client.chat.completions.create(model=CHAT, messages=messages, tools=tools)
        finish, text = r.choices[0].finish_reason, r.choices[0].message.content
        tool_calls = [c.model_dump() for c in r.choices[0].message.tool_calls or []]
    check(f"{label}: finish", finish == "tool_calls", repr(finish))
    check(f"{label}: text before the calls", text == "Let me check.", repr(text))
    check(f"{label}: one call per tool", len(tool_calls) == len(tools), repr(tool_calls))
    for call, tool, city in zip(tool_calls, tools, ["Paris", "Rome"]):
        check(f"{label}: name", call["function"]["name"] == tool["function"]["name"], repr(call))
        check(f"{label}: args", json.loads(call["function"]["arguments"]) == {"city": city},
              repr(call))
    ids = [c["id"] for c in tool_calls]
    check(f"{label}: distinct call ids", all(ids) and len(set(ids)) == len(ids), repr(ids))
    results = ["sunny, 21 C", "12:00"][: len(tools)]
    messages.append({"role": "assistant", "content": text, "tool_calls": tool_calls})
    for call, result in zip(tool_calls, results):
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    r = client.chat.completions.create(model=CHAT, messages=messages, tools=tools)
    check(f"{label}: answer uses every result",
          r.choices[0].message.content == "The tool said: " + "; ".join(results), repr(r))


def broken_stream():
    """An upstream that breaks off mid-stream must surface as an error, never as a normal end."""
    text, finish = "", None
    try:
        for chunk in client.chat.completions.create(
            model=CHAT, stream=True,
            messages=[{"role": "user", "content": "please BREAK_STREAM now and then say more"}],
        ):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        raise AssertionError(f"broken stream ended normally: {text!r} finish={finish!r}")
    except openai.APIError as e:
        check("broken stream -> APIError", finish is None and text.startswith("You"),
              f"{e!r} text={text!r} finish={finish!r}")


def responses_api():
    r = client.responses.create(model=CHAT, input=PROMPT)
    check("responses output_text", r.output_text == EXPECTED, repr(r))
    check("responses usage", r.usage is not None and r.usage.input_tokens > 0, repr(r.usage))
    text, final = "", None
    with client.responses.stream(
        model=CHAT, input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    check("responses stream deltas", text == EXPECTED, repr(text))
    check("responses stream final", final.output_text == EXPECTED and final.status == "completed",
          repr(final))


def embeddings():
    r = client.embeddings.create(model=EMBED, input="one two three")
    check("embedding count", len(r.data) == 1, repr(r))
    check("embedding vector", r.data[0].embedding == [0.25, -0.5, 3.0], repr(r.data[0].embedding))
    r = client.embeddings.create(model=EMBED, input=["a", "b c"], encoding_format="float")
    check("embedding float batch", [d.embedding[2] for d in r.data] == [1.0, 2.0], repr(r))
    check("embedding usage", r.usage.prompt_tokens == 3, repr(r.usage))


def models():
    ids = [m.id for m in client.models.list()]
    for name in MODELS:
        check(f"models lists {name}", name in ids, repr(ids))


def rate_limited():
    limited = openai.OpenAI(base_url=BASE, api_key=os.environ["NOVIQI_LIMITED_KEY"],
                            max_retries=0, timeout=30)
    args = dict(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    raw = limited.chat.completions.with_raw_response.create(**args)
    check("limited key first request", raw.headers.get("x-ratelimit-remaining-requests") == "0",
          dict(raw.headers))
    try:
        limited.chat.completions.create(**args)
        raise AssertionError("second request within the minute accepted")
    except openai.RateLimitError as e:
        retry_after = e.response.headers.get("retry-after")
        check("429 -> RateLimitError with Retry-After",
              e.status_code == 429 and retry_after is not None and int(retry_after) > 0,
              f"{e!r} {dict(e.response.headers)}")


def errors():
    bad = openai.OpenAI(base_url=BASE, api_key="nvq_not-a-real-key", max_retries=0, timeout=30)
    try:
        bad.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("bad key accepted")
    except openai.AuthenticationError as e:
        check("bad key -> AuthenticationError", e.status_code == 401, repr(e))
    try:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        check("unknown model -> NotFoundError", e.status_code == 404, repr(e))
        check("error body shape", isinstance(e.body, dict) and "message" in e.body, repr(e.body))


chat_non_stream()
chat_image()
chat_stream()
chat_stream_usage()
for tools in (TOOLS, TOOLS2):
    tools_round_trip(stream=False, tools=tools)
    tools_round_trip(stream=True, tools=tools)
broken_stream()
if EMBED:
    embeddings()
if RESPONSES:
    responses_api()
models()
errors()
rate_limited()
print("ALL OK", flush=True)
sys.exit(0)
