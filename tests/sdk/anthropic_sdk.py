"""The official `anthropic` Python SDK against noviqi, used unchanged (base_url + key).

Run by tests/sdk.rs. Settings come from the environment:
  NOVIQI_BASE_URL   e.g. http://127.0.0.1:PORT  (the SDK adds /v1/messages)
  NOVIQI_KEY        a gateway key allowed every model
  NOVIQI_MODEL      the gateway model name
  NOVIQI_UPSTREAM_KIND  "openai" or "anthropic": what the fake upstream counts as tokens
  NOVIQI_COUNT_TOKENS  "works" (anthropic upstream) or "404" (openai-kind upstream)
Exits non-zero (with a traceback) on the first failed check; prints one line per check.
"""

import os
import sys

import anthropic

BASE = os.environ["NOVIQI_BASE_URL"]
KEY = os.environ["NOVIQI_KEY"]
MODEL = os.environ["NOVIQI_MODEL"]
COUNT_TOKENS = os.environ["NOVIQI_COUNT_TOKENS"]
KIND = os.environ["NOVIQI_UPSTREAM_KIND"]
PROMPT = "Say hello to noviqi"
# The fakes count words: OpenAI's prompt = the messages' words; Anthropic's input = words + 3.
INPUT_TOKENS = 4 if KIND == "openai" else 7
OUTPUT_TOKENS = 6
EXPECTED = "You said: " + PROMPT

def tool(name, description):
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }


TOOLS = [tool("get_weather", "Current weather in a city")]
TOOLS2 = TOOLS + [tool("get_time", "Local time in a city")]


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name}", flush=True)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def create(client, label):
    m = client.messages.create(
        model=MODEL, max_tokens=256, system="You are terse.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    check(f"{label} create text", text_of(m) == EXPECTED, repr(m))
    check(f"{label} create stop_reason", m.stop_reason == "end_turn", m.stop_reason)
    check(f"{label} create type", m.type == "message" and m.role == "assistant", repr(m))
    check(f"{label} create usage", m.usage.input_tokens > 0 and m.usage.output_tokens > 0,
          repr(m.usage))


def stream(client):
    with client.messages.stream(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    check("stream text_stream", text == EXPECTED, repr(text))
    check("stream final text", text_of(final) == EXPECTED, repr(final))
    check("stream final stop_reason", final.stop_reason == "end_turn", final.stop_reason)
    check("stream final usage",
          (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS),
          repr(final.usage))


def tool_round_trip(client, streamed, tools):
    """Text plus one tool_use per tool, tool_results sent back, final text."""
    label = ("stream" if streamed else "create") + f" {len(tools)} tool(s)"
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if streamed:
        with client.messages.stream(
            model=MODEL, max_tokens=256, messages=messages, tools=tools
        ) as s:
            for _ in s:
                pass
            m = s.get_final_message()
    else:
        m = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=tools)
    check(f"{label}: stop_reason", m.stop_reason == "tool_use", repr(m))
    check(f"{label}: text first", m.content[0].type == "text"
          and m.content[0].text == "Let me check.", repr(m.content))
    uses = [b for b in m.content if b.type == "tool_use"]
    check(f"{label}: one tool_use per tool", len(uses) == len(tools), repr(m.content))
    for use, tool, city in zip(uses, tools, ["Paris", "Rome"]):
        check(f"{label}: name", use.name == tool["name"], repr(use))
        check(f"{label}: input", use.input == {"city": city}, repr(use))
    ids = [u.id for u in uses]
    check(f"{label}: distinct ids", all(ids) and len(set(ids)) == len(ids), repr(ids))
    results = ["sunny, 21 C", "12:00"][: len(tools)]
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": result}
            for use, result in zip(uses, results)
        ]},
    ]
    m = client.messages.create(model=MODEL, max_tokens=256, messages=messages, tools=tools)
    check(f"{label}: answer uses every result",
          text_of(m) == "The tool said: " + "; ".join(results), repr(m))
    check(f"{label}: final stop_reason", m.stop_reason == "end_turn", m.stop_reason)


def count_tokens(client):
    args = dict(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    if COUNT_TOKENS == "works":
        r = client.messages.count_tokens(**args)
        check("count_tokens input_tokens", r.input_tokens > 0, repr(r))
    else:
        try:
            client.messages.count_tokens(**args)
            raise AssertionError("count_tokens answered for a non-anthropic target")
        except anthropic.NotFoundError as e:
            check("count_tokens -> NotFoundError", e.status_code == 404, repr(e))
            body = e.body if isinstance(e.body, dict) else {}
            check("count_tokens error shape", body.get("type") == "error", repr(e.body))


def raw_events(client):
    """The raw event sequence a hand-written client would parse."""
    kinds = []
    for event in client.messages.create(
        model=MODEL, max_tokens=256, stream=True,
        messages=[{"role": "user", "content": PROMPT}],
    ):
        kinds.append(event.type)
    check("raw events start", kinds[:2] == ["message_start", "content_block_start"], kinds)
    check("raw events end", kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"],
          kinds)
    check("raw events deltas", "content_block_delta" in kinds, kinds)


def claude_code_shape(client):
    """What Claude Code sends: beta endpoint (?beta=true), anthropic-beta header, system as
    blocks with cache_control, an image block in a later turn."""
    pixel = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
             "RU5ErkJggg==")
    m = client.beta.messages.create(
        model=MODEL, max_tokens=256,
        betas=["interleaved-thinking-2025-05-14"],
        system=[{"type": "text", "text": "You are Claude Code.",
                 "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": pixel}},
                {"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral"}},
            ]},
        ],
    )
    check("beta create text", text_of(m) == EXPECTED, repr(m))


def claude_code_turn(client):
    """A Claude Code agent turn: streamed beta request with tools, tool_choice, metadata,
    thinking, a cached system block, and a failed tool_result given as text blocks."""
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "run the tests"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Running them."},
            {"type": "tool_use", "id": "toolu_01Bash", "name": "get_weather",
             "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01Bash", "is_error": True,
             "content": [{"type": "text", "text": "command failed:"},
                         {"type": "text", "text": "exit 1"}]},
        ]},
    ]
    with client.beta.messages.stream(
        model=MODEL, max_tokens=2048,
        betas=["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"],
        system=[{"type": "text", "text": "You are Claude Code.",
                 "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user_abc_account_def_session_123"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=TOOLS, tool_choice={"type": "auto"}, messages=messages,
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    # Translation joins the result's text blocks with a newline; compare words.
    check("claude code turn text", text.split() == "The tool said: command failed: exit 1".split(),
          repr(text))
    check("claude code turn stop", final.stop_reason == "end_turn", repr(final))


def broken_stream(client):
    """An upstream that breaks off mid-stream must raise, never end like a finished message."""
    text = ""
    try:
        with client.messages.stream(
            model=MODEL, max_tokens=256,
            messages=[{"role": "user", "content": "please BREAK_STREAM now and then say more"}],
        ) as s:
            for chunk in s.text_stream:
                text += chunk
            final = s.get_final_message()
        raise AssertionError(f"broken stream ended normally: {final!r}")
    except anthropic.APIError as e:
        check("broken stream -> APIError", text.startswith("You"), f"{e!r} text={text!r}")


def models(client):
    page = client.models.list()
    listed = {m.id: m for m in page}
    check("models.list has the model", MODEL in listed, repr(page))
    m = listed[MODEL]
    check("models.list Anthropic shape", m.type == "model" and m.display_name == MODEL
          and m.created_at is not None and page.has_more is False, repr(m))


def unknown_model(client):
    try:
        client.messages.create(model="no-such-model", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("unknown model accepted")
    except anthropic.NotFoundError as e:
        check("unknown model -> NotFoundError", e.status_code == 404, repr(e))
        body = e.body if isinstance(e.body, dict) else {}
        check("unknown model error shape", body.get("type") == "error"
              and body.get("error", {}).get("type") == "not_found_error", repr(e.body))


def rate_limited():
    limited = anthropic.Anthropic(base_url=BASE, api_key=os.environ["NOVIQI_LIMITED_KEY"],
                                  max_retries=0, timeout=30)
    args = dict(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    limited.messages.create(**args)
    try:
        limited.messages.create(**args)
        raise AssertionError("second request within the minute accepted")
    except anthropic.RateLimitError as e:
        body = e.body if isinstance(e.body, dict) else {}
        check("429 -> RateLimitError, Anthropic shape",
              e.status_code == 429 and e.response.headers.get("retry-after")
              and body.get("error", {}).get("type") == "rate_limit_error", repr(e.body))


def bad_key():
    bad = anthropic.Anthropic(base_url=BASE, api_key="nvq_not-a-real-key", max_retries=0,
                              timeout=30)
    try:
        bad.messages.create(model=MODEL, max_tokens=16,
                            messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("bad key accepted")
    except anthropic.AuthenticationError as e:
        check("bad key -> AuthenticationError", e.status_code == 401, repr(e))


by_api_key = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)
by_token = anthropic.Anthropic(base_url=BASE, auth_token=KEY, api_key=None, max_retries=0,
                               timeout=30)

create(by_api_key, "x-api-key")
create(by_token, "bearer")
stream(by_api_key)
for tools in (TOOLS, TOOLS2):
    tool_round_trip(by_api_key, streamed=False, tools=tools)
    tool_round_trip(by_api_key, streamed=True, tools=tools)
raw_events(by_api_key)
claude_code_shape(by_token)
claude_code_turn(by_token)
broken_stream(by_api_key)
count_tokens(by_api_key)
models(by_token)
unknown_model(by_api_key)
bad_key()
rate_limited()
print("ALL OK", flush=True)
sys.exit(0)
