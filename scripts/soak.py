#!/usr/bin/env python3
"""Traffic and checks for scripts/soak (read that script's header first).

Run by scripts/soak with the gateway and the fake upstream (examples/soak_upstream.rs)
already up. Stdlib only: threads and raw sockets, so every byte on the wire is ours to shape
(bad framing, a vanishing client, pipelining, HTTP/1.0).

What it does:
  - CLIENTS worker threads send mixed requests (see SCENARIOS) with 5-40 ms think times until
    the run's time is up; every request is bounded (socket timeouts, a 30 s deadline).
  - The main thread samples the gateway every 10 s: VmRSS and Threads from
    /proc/PID/status, open fds from /proc/PID/fd (split into client connections, upstream
    connections and the rest, through /proc/net/tcp), and prints a table row.
  - Twice it stops the traffic, lets connections drain and samples a quiet gateway: at the
    end of warm-up (the baseline) and at the end (the result). Warm-up is
    min(60 s, max(20 s, 20% of the run)): the first minute of a 5-minute run.
  - Then it reads the usage log (rotated files too) and compares it with what the clients
    sent, prints the summary and exits 0 (PASS) or 1 (FAIL).

Which requests must have a usage line (read from src/gateway/ and src/http/conn.rs): every
request that reaches the gateway's handler on a proxied path (POST /v1/chat/completions,
/v1/completions, /v1/embeddings, /v1/responses, /v1/messages, /v1/messages/count_tokens) is
recorded once by Gateway::finish, whatever its outcome: 401 (missing/unknown key), 429
(lockout, rate limit), 403, 404, 400 (bad JSON, missing model, a body that breaks off or has
bad chunk framing), 413 found while reading a chunked body, upstream failures (5xx, 429, 502,
504) and streams the client left. Refusals by the HTTP layer before the handler write none:
400 for a malformed head or ambiguous framing (Content-Length with Transfer-Encoding, a
non-numeric Content-Length), 413 for a declared Content-Length over max_body_bytes, 431, 408;
nor do local endpoints (/healthz, GET /v1/models). Those ids must be absent from the log.
"""

import argparse
import collections
import glob
import json
import os
import random
import socket
import struct
import sys
import threading
import time

SAMPLE_EVERY = 10.0
REQUEST_DEADLINE = 30.0
RECV_TIMEOUT = 20.0
CONNECT_TIMEOUT = 5.0
# Slack allowed at the end over the quiet baseline (see scripts/soak's header).
RSS_GROWTH = 0.10
FD_SLACK = 16
OTHER_FD_SLACK = 2
THREAD_SLACK = 2
QUIET_MAX = 100

BAD_KEY_ADDR = "127.0.0.2"  # unknown keys: this address is locked out early, and stays so
NO_KEY_ADDR = "127.0.0.3"  # no key at all
MAIN_ADDR = "127.0.0.1"


class Proto(Exception):
    """The gateway's answer broke HTTP or our expectations of its framing."""


# --- a small HTTP/1.1 client on raw sockets ------------------------------------------------


class Conn:
    def __init__(self, port, src=MAIN_ADDR):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(CONNECT_TIMEOUT)
        if src != MAIN_ADDR:
            self.sock.bind((src, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.used = 0

    def close(self, reset=False):
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.settimeout(RECV_TIMEOUT)
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(min(left, RECV_TIMEOUT))
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, sep, limit, deadline):
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise Proto(f"no {sep!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self._fill(deadline):
                raise EOFError("connection closed")

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, deadline):
        if not self.buf and not self._fill(deadline):
            return b""
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Resp:
    __slots__ = ("version", "status", "headers", "body", "complete", "close")

    def header(self, name):
        return self.headers.get(name)


def read_response(conn, method, deadline, on_data=None):
    """One response. `on_data(piece)` sees body pieces as they come; False stops reading
    (the response is then marked incomplete)."""
    head = conn.read_until(b"\r\n\r\n", 64 * 1024, deadline).decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Proto(f"bad status line {lines[0][:80]!r}")
    r = Resp()
    r.version, r.status = parts[0], int(parts[1])
    r.headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Proto(f"bad header line {line[:80]!r}")
        r.headers.setdefault(name.strip().lower(), value.strip())
    conn_hdr = r.headers.get("connection", "").lower()
    r.close = conn_hdr == "close" or (r.version == "HTTP/1.0" and conn_hdr != "keep-alive")
    body = bytearray()
    r.complete = True
    if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
        r.body = b""
        return r
    te = r.headers.get("transfer-encoding", "").lower()
    if te:
        if te != "chunked" or "content-length" in r.headers:
            raise Proto(f"bad response framing: te={te!r}")
        while True:
            line = conn.read_until(b"\r\n", 1024, deadline)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise Proto(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                while conn.read_until(b"\r\n", 8192, deadline) != b"":
                    pass
                break
            piece = conn.read_exact(size, deadline)
            if conn.read_exact(2, deadline) != b"\r\n":
                raise Proto("chunk not followed by CRLF")
            body += piece
            if on_data is not None and on_data(piece) is False:
                r.complete = False
                break
    elif "content-length" in r.headers:
        body += conn.read_exact(int(r.headers["content-length"]), deadline)
    else:
        r.close = True
        while True:
            piece = conn.read_some(deadline)
            if not piece:
                break
            body += piece
            if on_data is not None and on_data(piece) is False:
                r.complete = False
                break
    r.body = bytes(body)
    return r


def build_request(method, path, headers, body=b"", version="HTTP/1.1", framing="length"):
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    for name, value in headers:
        lines.append(f"{name}: {value}")
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = b""
        step = 64 * 1024
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            payload += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        payload += b"0\r\n\r\n"
    else:
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


# --- SSE ------------------------------------------------------------------------------------


def sse_events(text):
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((name, "\n".join(data)))
    return events


def is_error_event(name, data):
    if name in ("error", "response.failed"):
        return True
    try:
        v = json.loads(data)
    except ValueError:
        return False
    return isinstance(v, dict) and (v.get("error") is not None or v.get("type") in ("error", "response.failed"))


def is_terminal(endpoint, name, data):
    if endpoint == "chat":
        return data == "[DONE]"
    if endpoint == "messages":
        return name == "message_stop" or '"type":"message_stop"' in data.replace(" ", "")
    return name == "response.completed"


def stream_verdict(endpoint, body, asked_usage):
    """complete | error | incomplete | invalid:<why>"""
    try:
        events = sse_events(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "invalid:not utf-8"
    first_error = next((i for i, (n, d) in enumerate(events) if is_error_event(n, d)), None)
    terminal = next((i for i, (n, d) in enumerate(events) if is_terminal(endpoint, n, d)), None)
    if endpoint == "chat" and not asked_usage:
        for _, d in events:
            if '"usage"' in d and '"choices":[]' in d.replace(" ", ""):
                return "invalid:usage chunk shown to a client that did not ask"
    if first_error is not None:
        if terminal is not None and terminal < first_error:
            return "invalid:completion marker before the error event"
        return "error"
    if terminal is None:
        return "incomplete"
    if terminal != len(events) - 1:
        return "invalid:events after the completion marker"
    return "complete"


# --- the run's shared state -----------------------------------------------------------------


class Record:
    __slots__ = ("kind", "route", "fault", "stream", "key", "own_id", "resp_id", "expect", "status", "verdict", "problem", "complete")

    def __init__(self, kind, route="-", fault="-", stream=False, key=None, own_id=None, expect="yes"):
        self.kind, self.route, self.fault, self.stream, self.key = kind, route, fault, stream, key
        self.own_id, self.resp_id, self.expect = own_id, None, expect
        self.status, self.verdict, self.problem, self.complete = None, None, None, False

    def rid(self):
        return self.own_id or self.resp_id


class Run:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.records = []
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.tag = os.urandom(3).hex()
        self.keys = {"a": args.key_a, "b": args.key_b, "off": args.key_off}

    def add(self, rec):
        with self.lock:
            self.records.append(rec)

    def count(self):
        with self.lock:
            return len(self.records), sum(1 for r in self.records if r.problem)


# --- scenarios --------------------------------------------------------------------------------

# Routes: (endpoint, model, upstream behind it). Translated routes cross formats.
ROUTES = [
    ("chat", "gpt-soak", "openai"),  # native
    ("chat", "claude-soak", "anthropic"),  # OpenAI client -> Anthropic upstream
    ("chat", "mock", "mock"),
    ("chat", "oai/gpt-direct", "openai"),  # provider/model, no [[models]] entry
    ("chat", "fb-soak", "fallback"),
    ("messages", "claude-soak", "anthropic"),  # native
    ("messages", "gpt-soak", "openai"),  # Anthropic client -> OpenAI upstream
    ("messages", "mock", "mock"),
    ("responses", "gpt-soak", "openai"),  # native
    ("responses", "claude-soak", "anthropic"),  # Responses client -> Anthropic upstream
    ("count_tokens", "claude-soak", "anthropic"),
    ("count_tokens", "gpt-soak", "openai"),  # 404 in Anthropic's shape
]
ROUTE_WEIGHTS = [14, 12, 6, 3, 6, 12, 10, 4, 6, 6, 2, 1]
PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses", "count_tokens": "/v1/messages/count_tokens"}

FAULTS = ["-", "500", "429", "close", "truncate", "garbage", "slow", "stall", "stall-mid", "long"]
FAULT_WEIGHTS = [60, 5, 5, 4, 5, 3, 4, 2, 2, 5]
FB_FAULTS = ["-", "500@openai", "429@openai", "close@openai", "500@anthropic", "500"]
FB_WEIGHTS = [4, 3, 3, 2, 2, 1]


def expectation(endpoint, model, upstream, fault, stream):
    """(allowed statuses, stream verdict wanted for a 200 stream or None)."""
    if endpoint == "count_tokens":
        if upstream == "openai":
            return {404}, None
        return ({500} if fault == "500" else {200}), None
    if upstream == "mock":
        return {200}, "complete"
    if upstream == "fallback":
        if fault == "500":
            return {500}, None
        return {200}, "complete"
    if fault in ("-", "slow", "long"):
        return {200}, "complete"
    if fault == "500":
        return {500}, None
    if fault == "429":
        return {429}, None
    if fault in ("close", "garbage"):
        return {502}, None
    if fault == "stall":
        return {504}, None
    if fault == "truncate":
        return ({200}, "error") if stream else ({502}, None)
    if fault == "stall-mid":
        return {200}, "error"
    raise ValueError(fault)


def body_for(endpoint, model, prompt, stream, asked_usage):
    if endpoint == "chat":
        b = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
        if stream:
            b["stream"] = True
            if asked_usage:
                b["stream_options"] = {"include_usage": True}
    elif endpoint in ("messages", "count_tokens"):
        b = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]}
        if stream:
            b["stream"] = True
        if endpoint == "count_tokens":
            del b["max_tokens"]
    else:
        b = {"model": model, "input": prompt}
        if stream:
            b["stream"] = True
    return json.dumps(b).encode()


class Worker(threading.Thread):
    def __init__(self, run, wid):
        super().__init__(daemon=True, name=f"soak-{wid}")
        self.run_, self.wid = run, wid
        self.rng = random.Random(f"{run.tag}-{wid}")
        self.seq = 0
        self.conn = None
        self.idle = threading.Event()
        a = run.args
        self.port = a.port
        self.max_body = a.max_body

    # -- helpers --

    def new_id(self):
        self.seq += 1
        return f"soak-{self.run_.tag}-{self.wid}-{self.seq}"

    def drop_conn(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def auth_headers(self, key):
        if self.rng.random() < 0.5:
            return [("Authorization", f"Bearer {key}")]
        return [("x-api-key", key)]

    def prompt(self, fault):
        words = [f"soak prompt {self.wid}-{self.seq}"]
        if fault != "-":
            words.append(f"SOAK-FAULT:{fault}")
        r = self.rng.random()
        pad = self.rng.randrange(0, 2000) if r < 0.95 else self.rng.randrange(100_000, 300_000)
        words.append("x" * pad)
        words.append("please answer")
        return " ".join(words)

    def exchange(self, rec, raw, method="POST", on_data=None, fresh=False, src=MAIN_ADDR):
        """Sends `raw` and reads one response, on the worker's keep-alive connection unless
        `fresh`. Fills in rec.status/resp_id; returns the Resp or None after a problem."""
        deadline = time.monotonic() + REQUEST_DEADLINE
        own = fresh or src != MAIN_ADDR
        conn = None
        try:
            if own:
                conn = Conn(self.port, src)
            else:
                if self.conn is None:
                    self.conn = Conn(self.port)
                conn = self.conn
            conn.used += 1
            conn.send(raw)
            resp = read_response(conn, method, deadline, on_data)
        except (OSError, EOFError, Proto, TimeoutError) as e:
            if rec.expect == "yes" and rec.own_id is None:
                rec.expect = "maybe"
            rec.problem = f"client: {type(e).__name__}: {e}"
            if conn is not None:
                conn.close()
            if not own:
                self.conn = None
            return None
        rec.status = resp.status
        rec.resp_id = resp.header("x-request-id")
        rec.complete = resp.complete
        if rec.resp_id is None:
            rec.problem = "no x-request-id"
        elif rec.own_id and rec.expect == "yes" and rec.resp_id != rec.own_id:
            rec.problem = f"x-request-id {rec.resp_id} is not ours ({rec.own_id})"
        if own or resp.close or not resp.complete:
            conn.close(reset=not resp.complete)
            if not own:
                self.conn = None
        return resp

    # -- scenarios --

    def proxied(self):
        """A normal proxied request: any route, streamed or not, maybe an upstream fault."""
        rng = self.rng
        endpoint, model, upstream = rng.choices(ROUTES, ROUTE_WEIGHTS)[0]
        stream = endpoint != "count_tokens" and rng.random() < 0.5
        if upstream == "mock":
            fault = "-"
        elif upstream == "fallback":
            fault = rng.choices(FB_FAULTS, FB_WEIGHTS)[0]
        elif endpoint == "count_tokens":
            fault = rng.choice(["-", "-", "500"])
        else:
            fault = rng.choices(FAULTS, FAULT_WEIGHTS)[0]
            if fault == "garbage" and stream:
                fault = "-"
            if fault in ("stall-mid", "long") and not stream:
                fault = "-"
        key = "b" if model in ("gpt-soak", "claude-soak", "mock") and rng.random() < 0.3 else "a"
        asked_usage = endpoint == "chat" and stream and rng.random() < 0.5
        own = self.new_id() if rng.random() < 0.75 else None
        rec = Record("proxied", f"{endpoint} {model}", fault, stream, key, own)
        headers = self.auth_headers(self.run_.keys[key]) + [("Content-Type", "application/json")]
        if endpoint in ("messages", "count_tokens"):
            headers.append(("anthropic-version", "2023-06-01"))
        if own:
            headers.append(("x-request-id", own))
        body = body_for(endpoint, model, self.prompt(fault), stream, asked_usage)
        resp = self.exchange(rec, build_request("POST", PATHS[endpoint], headers, body))
        if resp is not None:
            self.judge(rec, resp, endpoint, model, upstream, fault, stream, asked_usage)
        self.run_.add(rec)

    def judge(self, rec, resp, endpoint, model, upstream, fault, stream, asked_usage):
        allowed, want = expectation(endpoint, model, upstream, fault, stream)
        if rec.key == "b" and resp.header("x-ratelimit-limit-requests") is None:
            rec.problem = rec.problem or "key with limits got no x-ratelimit headers"
        if resp.status not in allowed:
            rec.problem = rec.problem or f"status {resp.status}, wanted {sorted(allowed)}: {resp.body[:200]!r}"
            return
        ctype = resp.header("content-type") or ""
        if resp.status == 200 and stream:
            if "text/event-stream" not in ctype:
                rec.problem = rec.problem or f"stream answered as {ctype}"
                return
            rec.verdict = stream_verdict(endpoint, resp.body, asked_usage)
            if rec.verdict != want:
                rec.problem = rec.problem or f"stream {rec.verdict}, wanted {want}"
            return
        try:
            v = json.loads(resp.body)
        except ValueError:
            rec.problem = rec.problem or f"status {resp.status} body is not JSON: {resp.body[:120]!r}"
            return
        if resp.status == 200:
            shape = {"chat": "choices", "messages": "content", "responses": "output", "count_tokens": "input_tokens"}[endpoint]
            if not isinstance(v, dict) or shape not in v:
                rec.problem = rec.problem or f"200 body without {shape}"
        elif not isinstance(v, dict) or "error" not in v:
            rec.problem = rec.problem or f"error body without error: {resp.body[:120]!r}"

    def vanish(self):
        """A streamed request whose client closes after the first event (FIN or RST)."""
        rng = self.rng
        endpoint, model = rng.choice([("chat", "gpt-soak"), ("chat", "claude-soak"), ("messages", "claude-soak"),
                                       ("messages", "gpt-soak"), ("responses", "gpt-soak"), ("responses", "claude-soak"),
                                       ("chat", "mock")])
        reset = rng.random() < 0.5
        fault = "-" if model == "mock" else "long"
        own = self.new_id()
        rec = Record("vanish mid-stream " + ("RST" if reset else "FIN"), f"{endpoint} {model}", fault, True, "a", own)
        headers = self.auth_headers(self.run_.keys["a"]) + [("Content-Type", "application/json"), ("x-request-id", own)]
        body = body_for(endpoint, model, self.prompt(fault), True, False)
        seen = bytearray()

        def first_event(piece):
            seen.extend(piece)
            return b"\n\n" not in seen

        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            conn = Conn(self.port)
        except OSError as e:
            rec.problem = f"client: connect: {e}"
            rec.expect = "maybe"
            self.run_.add(rec)
            return
        try:
            conn.send(build_request("POST", PATHS[endpoint], headers, body))
            resp = read_response(conn, "POST", deadline, first_event)
            rec.status, rec.resp_id = resp.status, resp.header("x-request-id")
            if resp.status != 200:
                rec.problem = f"status {resp.status}"
        except (OSError, EOFError, Proto, TimeoutError) as e:
            rec.problem = f"client: {type(e).__name__}: {e}"
        conn.close(reset=reset)
        self.run_.add(rec)

    def abort_early(self):
        """A streamed request to a slow upstream whose client is gone before the answer's
        head: closed (FIN) or reset (RST) right after sending."""
        rng = self.rng
        endpoint, model = rng.choice([("chat", "gpt-soak"), ("messages", "claude-soak"), ("chat", "claude-soak"), ("responses", "gpt-soak")])
        reset = rng.random() < 0.5
        stream = rng.random() < 0.75
        if reset and stream and "abort_rst_stream" in self.run_.args.skip:
            reset = False  # the known lost-line case (see scripts/soak), left out on request
        own = self.new_id()
        rec = Record("abort before answer " + ("RST" if reset else "FIN") + (" stream" if stream else ""),
                     f"{endpoint} {model}", "slow", stream, "a", own)
        headers = self.auth_headers(self.run_.keys["a"]) + [("Content-Type", "application/json"), ("x-request-id", own)]
        body = body_for(endpoint, model, self.prompt("slow"), stream, False)
        try:
            conn = Conn(self.port)
            conn.send(build_request("POST", PATHS[endpoint], headers, body))
            time.sleep(0.05)  # the head and body are in the gateway's hands
            conn.close(reset=reset)
        except OSError as e:
            rec.problem = f"client: {e}"
            rec.expect = "maybe"
        self.run_.add(rec)

    def refusal(self):
        """Bad keys, bad bodies, bad framing, oversized bodies, local endpoints."""
        rng = self.rng
        kind = rng.choices(REFUSALS, REFUSAL_WEIGHTS)[0]
        own = self.new_id()
        a = self.run_.keys["a"]
        endpoint = rng.choice(["chat", "messages", "responses"])
        path = PATHS[endpoint]
        ok_body = body_for(endpoint, "gpt-soak", "hello", False, False)
        json_h = [("Content-Type", "application/json"), ("x-request-id", own)]
        src, fresh, method = MAIN_ADDR, False, "POST"
        expect, allowed = "yes", None
        framing = "length"
        body = ok_body
        headers = self.auth_headers(a) + json_h
        raw = None
        if kind == "unknown key":
            src = BAD_KEY_ADDR
            headers = self.auth_headers("nvq_" + os.urandom(32).hex()[:43]) + json_h
            allowed = {401, 429}
        elif kind == "no key":
            src = NO_KEY_ADDR
            headers = json_h
            allowed = {401, 429}
        elif kind == "disabled key":
            headers = self.auth_headers(self.run_.keys["off"]) + json_h
            allowed = {403}
        elif kind == "model not allowed":
            headers = self.auth_headers(self.run_.keys["b"]) + json_h
            body = body_for(endpoint, "fb-soak", "hello", False, False)
            allowed = {403}
        elif kind == "unknown model":
            body = body_for(endpoint, "no-such-model", "hello", False, False)
            allowed = {404}
        elif kind == "missing model":
            body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
            allowed = {400}
        elif kind == "bad JSON":
            body = b'{"model": "gpt-soak", "messages": [' + os.urandom(8).hex().encode()
            allowed = {400}
        elif kind == "oversized chunked body":
            body = b'{"model":"gpt-soak","input":"' + b"y" * (self.max_body + 64 * 1024) + b'"}'
            framing, fresh = "chunked", True
            allowed = {413}
        elif kind == "body cut short":
            fresh = True
            allowed = {400, 408}
        elif kind == "bad chunk framing":
            fresh = True
            allowed = {400}
        elif kind == "oversized Content-Length":
            body = b"z" * (self.max_body + 64 * 1024)
            fresh, expect, allowed = True, "no", {413}
        elif kind == "Content-Length and chunked":
            fresh, expect, allowed = True, "no", {400}
        elif kind == "bad Content-Length":
            fresh, expect, allowed = True, "no", {400}
        elif kind == "malformed head":
            fresh, expect, allowed = True, "no", {400}
        elif kind == "huge header":
            fresh, expect, allowed = True, "no", {431}
        elif kind == "GET /healthz":
            method, expect, allowed = "GET", "no", {200}
        elif kind == "GET /v1/models":
            method, expect, allowed = "GET", "no", {200}
        rec = Record(kind, path if method == "POST" else kind[4:], "-", False, None, own, expect)
        if kind == "body cut short":
            text = build_request("POST", path, headers, ok_body)
            raw = text[: len(text) - len(ok_body) // 2]
        elif kind == "bad chunk framing":
            raw = build_request("POST", path, headers + [("Transfer-Encoding", "chunked")], framing="none") + b"zz\r\nhello\r\n0\r\n\r\n"
        elif kind == "Content-Length and chunked":
            raw = build_request("POST", path, headers + [("Transfer-Encoding", "chunked")], ok_body)
        elif kind == "bad Content-Length":
            raw = build_request("POST", path, headers + [("Content-Length", "12abc")], framing="none") + ok_body
        elif kind == "malformed head":
            raw = b"HELLO THERE\r\nx-request-id: " + own.encode() + b"\r\n\r\n"
        elif kind == "huge header":
            raw = build_request("POST", path, headers + [("x-pad", "p" * 40_000)], ok_body)
        elif method == "GET":
            raw = build_request("GET", rec.route, self.auth_headers(a) + [("x-request-id", own)], framing="none")
        else:
            raw = build_request("POST", path, headers, body, framing=framing)
        if kind == "body cut short":
            resp = self.half_close_exchange(rec, raw)
        else:
            resp = self.exchange(rec, raw, method=method, fresh=fresh, src=src)
        if resp is not None:
            if resp.status not in allowed:
                rec.problem = rec.problem or f"status {resp.status}, wanted {sorted(allowed)}: {resp.body[:160]!r}"
            elif expect == "no" and method == "POST" and rec.resp_id == own:
                rec.problem = rec.problem or "layer refusal echoed our request id"
            if kind == "no key" and resp.status == 429:
                rec.verdict = "locked out"
        self.run_.add(rec)

    def half_close_exchange(self, rec, raw):
        """Sends part of a body, shuts our sending side, reads the answer."""
        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            conn = Conn(self.port)
        except OSError as e:
            rec.problem, rec.expect = f"client: connect: {e}", "maybe"
            return None
        try:
            conn.send(raw)
            conn.sock.shutdown(socket.SHUT_WR)
            resp = read_response(conn, "POST", deadline)
        except (OSError, EOFError, Proto, TimeoutError) as e:
            rec.problem = f"client: {type(e).__name__}: {e}"
            conn.close()
            return None
        conn.close()
        rec.status, rec.resp_id = resp.status, resp.header("x-request-id")
        return resp

    def http10_stream(self):
        """An HTTP/1.0 client asking for a stream: the answer is close-delimited."""
        own = self.new_id()
        endpoint, model = self.rng.choice([("chat", "gpt-soak"), ("messages", "claude-soak"), ("chat", "claude-soak")])
        rec = Record("HTTP/1.0 stream", f"{endpoint} {model}", "-", True, "a", own)
        headers = self.auth_headers(self.run_.keys["a"]) + [("Content-Type", "application/json"), ("x-request-id", own)]
        raw = build_request("POST", PATHS[endpoint], headers, body_for(endpoint, model, self.prompt("-"), True, False), version="HTTP/1.0")
        resp = self.exchange(rec, raw, fresh=True)
        if resp is not None:
            if resp.status != 200 or "transfer-encoding" in resp.headers:
                rec.problem = f"HTTP/1.0 stream: status {resp.status}, te={resp.header('transfer-encoding')}"
            else:
                rec.verdict = stream_verdict(endpoint, resp.body, False)
                if rec.verdict != "complete":
                    rec.problem = f"stream {rec.verdict}"
        self.run_.add(rec)

    def pipelined(self):
        """Two requests in one write on a new connection; two answers in order."""
        ids = [self.new_id(), self.new_id()]
        recs = [Record("pipelined pair", "chat gpt-soak", "-", False, "a", i) for i in ids]
        raw = b""
        for i in ids:
            headers = self.auth_headers(self.run_.keys["a"]) + [("Content-Type", "application/json"), ("x-request-id", i)]
            raw += build_request("POST", "/v1/chat/completions", headers, body_for("chat", "gpt-soak", self.prompt("-"), False, False))
        deadline = time.monotonic() + REQUEST_DEADLINE
        try:
            conn = Conn(self.port)
            conn.send(raw)
            for rec in recs:
                resp = read_response(conn, "POST", deadline)
                rec.status, rec.resp_id = resp.status, resp.header("x-request-id")
                if resp.status != 200 or rec.resp_id != rec.own_id:
                    rec.problem = f"pipelined: status {resp.status}, id {rec.resp_id} for {rec.own_id}"
        except (OSError, EOFError, Proto, TimeoutError) as e:
            for rec in recs:
                if rec.status is None:
                    rec.problem = f"client: {type(e).__name__}: {e}"
        finally:
            if "conn" in locals():
                conn.close()
        for rec in recs:
            self.run_.add(rec)

    def run(self):
        scenarios = [self.proxied, self.refusal, self.vanish, self.abort_early, self.http10_stream, self.pipelined]
        weights = [70, 16, 5, 4, 2, 3]
        skip = set(self.run_.args.skip)
        for i, s in enumerate(scenarios):
            if s.__name__ in skip:
                weights[i] = 0
        limit = 10_000_000  # bounded even if the clock misbehaves
        while limit > 0 and not self.run_.stop.is_set():
            limit -= 1
            if self.run_.pause.is_set():
                self.drop_conn()
                self.idle.set()
                while self.run_.pause.is_set() and not self.run_.stop.is_set():
                    time.sleep(0.05)
                self.idle.clear()
                continue
            try:
                self.rng.choices(scenarios, weights)[0]()
            except Exception as e:  # a bug in this script must not hide behind a thread
                rec = Record("client bug", "-", "-", False, None, None, "maybe")
                rec.problem = f"client exception {type(e).__name__}: {e}"
                self.run_.add(rec)
            time.sleep(self.rng.uniform(0.005, 0.04))
        self.drop_conn()
        self.idle.set()


REFUSALS = ["unknown key", "no key", "disabled key", "model not allowed", "unknown model", "missing model", "bad JSON",
            "oversized chunked body", "body cut short", "bad chunk framing", "oversized Content-Length",
            "Content-Length and chunked", "bad Content-Length", "malformed head", "huge header", "GET /healthz", "GET /v1/models"]
REFUSAL_WEIGHTS = [8, 6, 5, 5, 5, 5, 6, 2, 4, 4, 2, 4, 4, 4, 3, 4, 4]


# --- sampling -------------------------------------------------------------------------------


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return int(out["VmRSS"].split()[0]), int(out["Threads"])


def tcp_table():
    """inode -> (local port, remote port, state) for IPv4 and IPv6 TCP sockets."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    local, remote, state, inode = p[1], p[2], p[3], p[9]
                    table[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
        except OSError:
            pass
    return table


class Sample:
    __slots__ = ("t", "rss", "threads", "fds", "client", "upstream", "other", "phase", "sent", "problems")


def sample(run, t0, phase):
    a = run.args
    s = Sample()
    s.t, s.phase = time.monotonic() - t0, phase
    s.rss, s.threads = proc_status(a.pid)
    tcp = tcp_table()
    s.fds = s.client = s.upstream = 0
    for fd in os.listdir(f"/proc/{a.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{a.pid}/fd/{fd}")
        except OSError:
            continue
        s.fds += 1
        if target.startswith("socket:["):
            info = tcp.get(target[8:-1])
            if info is None:
                continue
            lport, rport, state = info
            if lport == a.port and state != "0A":  # 0A = LISTEN
                s.client += 1
            elif rport == a.upstream_port:
                s.upstream += 1
    s.other = s.fds - s.client - s.upstream
    s.sent, s.problems = run.count()
    return s


def print_row(s, prev):
    rate = "-"
    if prev is not None and s.t > prev.t:
        rate = f"{(s.sent - prev.sent) / (s.t - prev.t):.0f}"
    print(f"{s.t:7.0f}  {s.phase:<8} {s.rss / 1024:8.1f} {s.fds:5d} {s.client:4d} {s.upstream:4d} {s.other:5d} "
          f"{s.threads:7d} {s.sent:8d} {rate:>6} {s.problems:6d}", flush=True)


def header_row():
    print(f"{'t s':>7}  {'phase':<8} {'RSS MiB':>8} {'fds':>5} {'cli':>4} {'up':>4} {'other':>5} {'threads':>7} "
          f"{'requests':>8} {'req/s':>6} {'probs':>6}", flush=True)


def quiesce(run, workers, t0, phase, samples, fixed_threads):
    """With the traffic paused (or stopped): waits until the gateway holds no client
    connection, its idle connection threads have retired (the pool lets a thread go after
    60 s without a connection) and its fd count holds still, then samples. A row every 10 s
    meanwhile. Bounded: 60 s for the clients to finish, 100 s for the gateway to settle.
    Returns (the sample, whether it settled)."""
    limit = time.monotonic() + 60
    while time.monotonic() < limit and not all(w.idle.is_set() or not w.is_alive() for w in workers):
        time.sleep(0.1)
    limit = time.monotonic() + QUIET_MAX
    next_row = time.monotonic() + SAMPLE_EVERY
    last = None
    while True:
        s = sample(run, t0, phase)
        settled = (s.client == 0 and s.threads <= fixed_threads and last is not None
                   and last.fds == s.fds and last.threads == s.threads)
        if settled or time.monotonic() >= limit or not os.path.exists(f"/proc/{run.args.pid}"):
            break
        if time.monotonic() >= next_row:
            s.phase = "quiet"
            print_row(s, samples[-1])
            samples.append(s)
            next_row += SAMPLE_EVERY
        last = s
        time.sleep(1.0)
    print_row(s, samples[-1])
    samples.append(s)
    save_smaps(run, phase)
    return s, settled


def save_smaps(run, phase):
    """With SOAK_SMAPS=DIR: keeps the quiet gateway's /proc/PID/smaps as DIR/PHASE.smaps, for
    scripts/smaps-summary (where the resident memory is: arenas, stacks, heap)."""
    directory = os.environ.get("SOAK_SMAPS")
    if not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
        with open(f"/proc/{run.args.pid}/smaps") as src, open(os.path.join(directory, f"{phase}.smaps"), "w") as dst:
            dst.write(src.read())
    except OSError as e:
        print(f"soak: cannot save smaps: {e}", file=sys.stderr)


# --- the usage log --------------------------------------------------------------------------


def read_usage(directory):
    files = sorted(glob.glob(os.path.join(directory, "usage.jsonl*")))
    lines, bad = [], 0
    for name in files:
        with open(name, "rb") as f:
            for raw in f:
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    bad += 1
    return files, lines, bad


# --- main -----------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--key-a", required=True)
    p.add_argument("--key-b", required=True)
    p.add_argument("--key-off", required=True)
    p.add_argument("--usage-dir", required=True)
    p.add_argument("--usage-keep", type=int, required=True)
    p.add_argument("--max-body", type=int, required=True)
    p.add_argument("--gateway-log", required=True)
    p.add_argument("--skip", action="append", default=[], help="scenarios to leave out, comma-separated: proxied, refusal, vanish, abort_early, "
                   "http10_stream, pipelined, or abort_rst_stream (only the reset-before-the-head stream case)")
    args = p.parse_args()
    args.skip = [x for s in args.skip for x in s.split(",") if x]
    # Keys come from the environment (not argv, which other users can read).
    for name in ("key_a", "key_b", "key_off"):
        v = getattr(args, name)
        if v.startswith("env:"):
            setattr(args, name, os.environ[v[4:]])

    run = Run(args)
    duration = args.minutes * 60
    warmup = min(60.0, max(20.0, 0.2 * duration))
    t0 = time.monotonic()
    workers = [Worker(run, i) for i in range(args.clients)]
    print(f"soak: {args.clients} clients, {duration:.0f} s of traffic, warm-up {warmup:.0f} s, a sample every "
          f"{SAMPLE_EVERY:.0f} s (fds: cli = client connections, up = upstream connections, other = the rest)", flush=True)
    header_row()
    first = sample(run, t0, "start")
    print_row(first, None)
    save_smaps(run, "start")
    # Threads of an idle gateway with its pool empty; a little room for ones started lazily.
    fixed_threads = first.threads + 2
    samples = [first]
    for w in workers:
        w.start()
    baseline, base_settled = None, False
    traffic = 0.0  # seconds of traffic so far (quiet periods do not count)
    died = False
    while traffic < duration:
        step = min(SAMPLE_EVERY, duration - traffic)
        if baseline is None:
            step = min(step, max(0.0, warmup - traffic))
        started = time.monotonic()
        time.sleep(step)
        traffic += time.monotonic() - started
        if not os.path.exists(f"/proc/{args.pid}"):
            died = True
            break
        if baseline is None and traffic >= warmup - 0.01:
            run.pause.set()
            baseline, base_settled = quiesce(run, workers, t0, "baseline", samples, fixed_threads)
            run.pause.clear()
        elif traffic < duration - 0.01:
            s = sample(run, t0, "load")
            print_row(s, samples[-1])
            samples.append(s)
    run.stop.set()
    final, end_settled = None, False
    if not died:
        final, end_settled = quiesce(run, workers, t0, "end", samples, fixed_threads)
    for w in workers:
        w.join(timeout=REQUEST_DEADLINE + 5)
    stuck = [w.name for w in workers if w.is_alive()]

    failures = []
    notes = []
    if died:
        failures.append("the gateway process exited during the run")
    if stuck:
        failures.append(f"client threads still busy after the run: {stuck}")
    if baseline is None and not died:
        failures.append("the run ended before the warm-up baseline was taken")

    # Usage log vs what the clients sent.
    records = run.records
    files, lines, bad_lines = read_usage(args.usage_dir)
    ids = collections.Counter(l.get("request_id") for l in lines)
    by_id = {l.get("request_id"): l for l in lines}
    yes = [r for r in records if r.expect == "yes"]
    maybe = [r for r in records if r.expect == "maybe"]
    no = [r for r in records if r.expect == "no"]
    lost = [r for r in yes if r.rid() not in ids]
    maybe_found = sum(1 for r in maybe if r.rid() and r.rid() in ids)
    maybe_unknown = sum(1 for r in maybe if not r.rid())
    known = {r.rid() for r in yes + maybe if r.rid()}
    strangers = [i for i in ids if i not in known]
    dups = [i for i, n in ids.items() if n > 1]
    leaked_refusals = [r for r in no if (r.own_id in ids) or (r.resp_id in ids)]
    mismatched = []
    for r in yes:
        line = by_id.get(r.rid())
        if line is None or r.status is None or not r.complete or r.problem:
            continue
        why = None
        if line.get("status") != r.status:
            why = f"usage status {line.get('status')} vs response {r.status}"
        elif r.kind == "proxied" and line.get("key") != f"soak-{r.key}":
            why = f"usage key {line.get('key')!r} for key {r.key}"
        elif r.verdict == "complete" and line.get("error") is not None:
            why = f"usage error {line.get('error')!r} on a complete stream"
        elif r.verdict == "error" and line.get("error") is None:
            why = "usage error null on a stream that ended in an error event"
        elif r.status == 200 and not r.stream and line.get("error") is not None:
            why = f"usage error {line.get('error')!r} on a 200"
        if why:
            mismatched.append((r, why))
    expected_lines = len(yes) + maybe_found
    if bad_lines:
        failures.append(f"{bad_lines} usage lines are not JSON (torn or corrupt)")
    if lost:
        failures.append(f"LOST: {len(lost)} requests that reached the handler have no usage line")
    if len(lines) != expected_lines and not (len(lines) - expected_lines <= maybe_unknown and not strangers):
        failures.append(f"usage lines {len(lines)} != requests that must have one {expected_lines}")
    if strangers and len(strangers) > maybe_unknown:
        failures.append(f"{len(strangers)} usage lines with a request id no client was given")
    if dups:
        failures.append(f"{len(dups)} request ids appear more than once in the usage log")
    if leaked_refusals:
        failures.append(f"{len(leaked_refusals)} refusals by the HTTP layer have a usage line")
    if mismatched:
        failures.append(f"{len(mismatched)} usage lines disagree with the response the client saw")
    oldest = max((int(f.rsplit(".", 1)[1]) for f in files if f.rsplit(".", 1)[1].isdigit()), default=0)
    if oldest >= args.usage_keep:
        failures.append(f"usage rotation reached keep = {args.usage_keep}: old lines may have been dropped; raise keep")

    problems = [r for r in records if r.problem]
    if problems:
        failures.append(f"{len(problems)} requests got an answer they should not have (see below)")

    # Resources: quiet end vs quiet baseline.
    if baseline is not None and final is not None:
        for name, ok, smp in (("baseline", base_settled, baseline), ("end", end_settled, final)):
            if not ok:
                failures.append(f"the gateway did not settle within {QUIET_MAX} s of quiet at the {name} (client connections "
                                f"{smp.client}, threads {smp.threads}, an idle pool has at most {fixed_threads})")
        if final.client != 0:
            failures.append(f"{final.client} client connections still open at the end (nothing is sending)")
        growth = final.rss / baseline.rss - 1
        if growth > RSS_GROWTH:
            failures.append(f"RSS grew {growth * 100:.1f}% over the baseline (limit {RSS_GROWTH * 100:.0f}%)")
        if final.fds > baseline.fds + FD_SLACK:
            failures.append(f"fds {final.fds} > baseline {baseline.fds} + {FD_SLACK}")
        if final.other > baseline.other + OTHER_FD_SLACK:
            failures.append(f"non-connection fds {final.other} > baseline {baseline.other} + {OTHER_FD_SLACK}")
        if final.threads > baseline.threads + THREAD_SLACK:
            failures.append(f"threads {final.threads} > baseline {baseline.threads} + {THREAD_SLACK}")

    # The gateway's own log and the fake upstream's view.
    panics = 0
    warn_lines = 0
    try:
        with open(args.gateway_log, errors="replace") as f:
            for line in f:
                if "panicked" in line:
                    panics += 1
                if " WARN " in line or " ERROR " in line:
                    warn_lines += 1
    except OSError:
        pass
    if panics:
        failures.append(f"{panics} panics in the gateway log")
    up = {}
    try:
        c = Conn(args.upstream_port)
        c.send(build_request("GET", "/stats", [], framing="none"))
        up = json.loads(read_response(c, "GET", time.monotonic() + 5).body)
        c.close()
    except (OSError, EOFError, Proto, TimeoutError, ValueError) as e:
        failures.append(f"cannot read the fake upstream's /stats: {e}")
    if up.get("leaks"):
        failures.append(f"{up['leaks']} upstream requests carried a gateway key (nvq_)")
    if up.get("bad_auth"):
        failures.append(f"{up['bad_auth']} upstream requests lacked the provider credential")

    # --- summary ---
    print()
    print("Requests by kind (statuses as the clients saw them; usage = lines that must exist / found)")
    groups = collections.OrderedDict()
    for r in records:
        if r.kind == "proxied":
            k = f"proxied {r.route}{' stream' if r.stream else ''}"
        else:
            k = r.kind
        groups.setdefault(k, []).append(r)
    print(f"  {'kind':<44} {'sent':>6} {'usage':>13} {'probs':>5}  statuses")
    for k in sorted(groups, key=lambda k: (not k.startswith("proxied"), k)):
        rs = groups[k]
        st = collections.Counter(r.status if r.status is not None else "none" for r in rs)
        must = [r for r in rs if r.expect == "yes"]
        found = sum(1 for r in must if r.rid() in ids)
        usage = f"{found}/{len(must)}" if must else "none due"
        print(f"  {k:<44} {len(rs):6d} {usage:>13} {sum(1 for r in rs if r.problem):5d}  "
              + " ".join(f"{s}:{n}" for s, n in sorted(st.items(), key=lambda x: str(x[0]))))
    print()
    print("Upstream faults injected (proxied requests)")
    faults = collections.OrderedDict()
    for r in records:
        if r.kind == "proxied":
            faults.setdefault(r.fault, []).append(r)
    for f in sorted(faults):
        rs = faults[f]
        st = collections.Counter(r.status if r.status is not None else "none" for r in rs)
        ver = collections.Counter(r.verdict for r in rs if r.verdict)
        print(f"  {f:<14} {len(rs):6d}  " + " ".join(f"{s}:{n}" for s, n in sorted(st.items(), key=lambda x: str(x[0])))
              + ("   streams: " + " ".join(f"{v}:{n}" for v, n in sorted(ver.items())) if ver else ""))
    print()
    locked = sum(1 for r in records if r.kind == "no key" and r.verdict == "locked out")
    if locked:
        notes.append(f"{locked} requests with no key at all were locked out (429): the lockout counts them as failures")
    print(f"Requests sent: {len(records)}; usage lines must exist for {len(yes)} (+{maybe_found} of {len(maybe)} uncertain), "
          f"must not for {len(no)}; the log has {len(lines)} lines in {len(files)} files; lost {len(lost)}; "
          f"duplicates {len(dups)}; strangers {len(strangers)}")
    if baseline is not None and final is not None:
        print(f"Quiet baseline at {baseline.t:.0f} s: RSS {baseline.rss / 1024:.1f} MiB, fds {baseline.fds}, threads {baseline.threads}; "
              f"quiet end: RSS {final.rss / 1024:.1f} MiB ({(final.rss / baseline.rss - 1) * 100:+.1f}%), fds {final.fds} "
              f"({final.fds - baseline.fds:+d}), threads {final.threads} ({final.threads - baseline.threads:+d}); "
              f"peak in-load RSS {max(s.rss for s in samples) / 1024:.1f} MiB")
    print(f"Fake upstream: {up.get('requests', '?')} requests, {up.get('leaks', '?')} with a gateway key, "
          f"{up.get('bad_auth', '?')} without the provider credential; gateway log: {warn_lines} WARN/ERROR lines, {panics} panics")
    for r in lost[:10]:
        print(f"  lost: {r.rid()} {r.kind} {r.route} fault={r.fault} stream={r.stream} status={r.status} {r.problem or ''}")
    for r in leaked_refusals[:5]:
        print(f"  refusal with a usage line: {r.kind} {r.own_id} {r.resp_id}")
    for i in strangers[:5]:
        print(f"  stranger usage line: {by_id[i]}")
    for r, why in mismatched[:10]:
        print(f"  mismatch: {r.rid()} {r.kind} {r.route} fault={r.fault} stream={r.stream}: {why}")
    shown = collections.Counter()
    for r in problems:
        key = (r.kind, r.route, r.fault, r.problem[:60])
        shown[key] += 1
        if shown[key] == 1 and len(shown) <= 15:
            print(f"  problem: {r.kind} {r.route} fault={r.fault} stream={r.stream} id={r.rid()}: {r.problem[:300]}")
    for n in notes:
        print(f"note: {n}")
    for f in failures:
        print(f"FAIL: {f}")
    sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
