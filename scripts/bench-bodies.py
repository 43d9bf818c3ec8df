#!/usr/bin/env python3
"""The request bodies and wrk scripts of `scripts/bench`'s big-body workloads, written into OUT.

Usage: bench-bodies.py OUT KEY HOLD_MS, or bench-bodies.py --models HOLD_MS to print the model
names the bodies use (one a line), for the gateway's config.

From the recorded client turns in tests/fixtures/clients/ (deterministic: the same files on
every run, nothing random but a seeded generator):
  cc83.json        Claude Code's first turn as recorded (~83 KB), model claude-bench
  cc2m.json        a long Claude Code session of 2 MiB built from it: the first turn, then
                   assistant turns that call Read (tool_use) and user turns with the file's
                   contents (tool_result, ~40 KB of numbered source lines each)
  cc2m-oai.json    the same, for a model whose target is an OpenAI-kind provider
  cc2m-hold.json, cc2m-oai-hold.json   the same two, held HOLD_MS by the fake upstream
  codex.json       Codex's first Responses turn as recorded, for an Anthropic-kind target
and for each a wrk script NAME.lua: POST, the client's own headers (its credential replaced
by the bench key), the body read from the file once per wrk thread.
"""
import json
import os
import random
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "clients")
TARGET = 2 * 1024 * 1024
# The fake's chat streams are paced unless the model says otherwise: 3 events, none apart.
QUICK_CHAT = "-s3x0"


def compact(value):
    # As the clients send it (JSON.stringify, serde_json): no spaces, UTF-8 as it is.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def source_file(rng, n, lines):
    """Numbered lines of plausible Rust, as Claude Code's Read returns a file."""
    words = ["config", "request", "body", "stream", "upstream", "limit", "window", "key",
             "token", "usage", "route", "target", "event", "buffer", "header", "timeout"]
    out = []
    for i in range(1, lines + 1):
        a, b, c = rng.choice(words), rng.choice(words), rng.choice(words)
        kind = rng.randrange(6)
        if kind == 0:
            text = f'    let {a}_{b} = {c}.get("{a}").unwrap_or_default(); // {n}:{i}'
        elif kind == 1:
            text = f'    if {a}.len() > {rng.randrange(1, 1 << 16)} {{ return Err(Error::{b.title()}("{c} too long: \\"{a}\\"")); }}'
        elif kind == 2:
            text = f"    /// Reads the {a} of a {b}, then the {c}; see `{a}::{b}` and {n}.{i}."
        elif kind == 3:
            text = f"fn {a}_{b}_{i}(&self, {c}: &[u8]) -> Result<{b.title()}, Error> {{"
        elif kind == 4:
            text = f'        "{a}" => Some(Kind::{b.title()}), // tab\there'
        else:
            text = "    }"
        out.append(f"{i:>6}\t{text}")
    return "\n".join(out)


def long_session(first):
    body = json.loads(json.dumps(first))
    rng = random.Random(18)
    messages = body["messages"]
    size = len(compact(body))
    n = 0
    while size < TARGET:
        n += 1
        tool_id = f"toolu_bench{n:04d}"
        path = f"/home/user/project/src/module_{n:03d}.rs"
        assistant = {"role": "assistant", "content": [
            {"type": "text", "text": f"Let me read {path} to see how it handles the {n}th case."},
            {"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": path}},
        ]}
        user = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id,
             "content": source_file(rng, n, rng.randrange(500, 700))},
        ]}
        grow = len(compact(assistant)) + len(compact(user)) + 2
        if size + grow > TARGET and n > 1:
            # Trim the last file so the body lands on TARGET (within a few bytes).
            text = user["content"][0]["content"]
            cut = TARGET - size - (grow - len(compact(text)))
            user["content"][0]["content"] = text[:max(cut, 1000)]
        messages.extend([assistant, user])
        size = len(compact(body))
    return body


def lua(path, headers, body_file, key):
    lines = ['wrk.method = "POST"']
    for name, value in headers.items():
        if name in ("authorization", "content-length", "host", "accept-encoding"):
            continue
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    lines.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
    lines.append(f'local f = assert(io.open({json.dumps(body_file)}, "rb"))')
    lines.append("wrk.body = f:read(\"*a\")")
    lines.append("f:close()")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def models(hold):
    """The model names the bodies use, as the gateway's config must route them."""
    return sorted({"claude-bench", f"claude-bench-hold{hold}", "claude-bench-via-openai" + QUICK_CHAT,
                   f"claude-bench-via-openai-hold{hold}" + QUICK_CHAT, "codex-bench-via-anthropic"})


def main():
    if sys.argv[1] == "--models":
        print("\n".join(models(int(sys.argv[2]))))
        return
    out, key, hold = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(FIXTURES, "claude_code_turn.json")) as f:
        claude = json.load(f)
    with open(os.path.join(FIXTURES, "codex_responses_turn.json")) as f:
        codex = json.load(f)
    first = dict(claude["body"], model="claude-bench")
    session = long_session(first)
    bodies = {
        "cc83": (claude, first),
        "cc2m": (claude, session),
        "cc2m-oai": (claude, dict(session, model="claude-bench-via-openai" + QUICK_CHAT)),
        "cc2m-hold": (claude, dict(session, model=f"claude-bench-hold{hold}")),
        "cc2m-oai-hold": (claude, dict(session,
                                       model=f"claude-bench-via-openai-hold{hold}" + QUICK_CHAT)),
        "codex": (codex, dict(codex["body"], model="codex-bench-via-anthropic")),
    }
    for name, (recorded, body) in bodies.items():
        body_file = os.path.join(out, name + ".json")
        with open(body_file, "wb") as f:
            f.write(compact(body))
        lua(os.path.join(out, name + ".lua"), recorded["headers"], body_file, key)
    assert sorted({b["model"] for _, b in bodies.values()}) == models(hold)


if __name__ == "__main__":
    main()
