"""The `openai` backend against a real chat-completions server on 127.0.0.1 (an ephemeral port, in a thread):
requests, streaming, retries, timeouts, malformed answers, and an API key that never leaks."""

from __future__ import annotations

import json
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import pytest
from loopback import LoopbackServer

from advisor.explain import explain, stream_explain
from advisor.explain.backends.openai_compat import OpenAICompatBackend
from advisor.explain.grounding import build_grounding, build_messages
from advisor.models import AdvisorError, Diagnosis, Evidence, Signal, Suggestion
from kb.models import Provenance

KEY = "sk-test-Secret0123456789abcdef"
GROUNDED = ("What is probably going on\nThe loss went NaN at step 1200 [guide/001-loss-becomes-nan].\n"
            "Fixes to try first\n1. Reduce learning rate by 10x [guide/001-loss-becomes-nan].\n"
            "How to tell if it worked\nThe loss stays finite past step 1500.")
def nan_run() -> Diagnosis:
    nan = Signal(kind="nan_inf", metric="loss", start=1200, end=1500, severity="high",
                 numbers={"first_nonfinite_step": 1200}, summary="loss became NaN at step 1200")
    return Diagnosis(path="runs/nan/metrics.csv", signals=[nan], suggestions=[Suggestion(
        id="guide/001-loss-becomes-nan", source="guide", title="Loss becomes NaN", score=0.9, severity="high",
        evidence=[Evidence.from_signal(nan)], steps=["Reduce learning rate by 10x", "Add gradient clipping"],
        provenance=Provenance(file="guide-troubleshooting.md", start_line=28, end_line=60), matched_by=["link"])])


# -- the server ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    text: str | None = GROUNDED  # a chat completion with this content (body=None)
    body: Any = None  # a dict (sent as JSON) or a str (sent raw) instead of a completion
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    events: list[str] | None = None  # stream these content pieces as SSE
    raw_events: list[str] | None = None  # or these exact data: payloads
    gate: threading.Event | None = None  # hold the stream after its first piece until set


def _completion(text: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def _chunk(delta: dict, finish: str | None = None) -> str:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


class ChatServer(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[Reply] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw.decode(),
                                        "body": json.loads(raw)})
                reply = server.script.pop(0) if server.script else Reply()
                try:
                    time.sleep(reply.delay)
                    if reply.events is not None or reply.raw_events is not None:
                        self._stream(reply)
                    else:
                        self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _send(self, reply: Reply) -> None:
                body = reply.body if reply.body is not None else _completion(reply.text or "")
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                payloads = reply.raw_events or [_chunk({"role": "assistant"})] + [_chunk({"content": p}) for p in reply.events or []]
                if reply.raw_events is None:
                    payloads += [_chunk({}, "stop"), "[DONE]"]
                self.wfile.write(b": keep-alive comment\n\n")
                for i, payload in enumerate(payloads):
                    if reply.gate is not None and i == 2:
                        reply.gate.wait(5)
                    self.wfile.write(f"data: {payload}\n\n".encode())
                    self.wfile.flush()

        self._serve(Handler)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer().running() as s:
        yield s


def _explain(server: ChatServer, **options):
    options = {"base_url": server.url, "model": "test-model", "api_key": KEY, "backoff": 0.01, **options}
    return explain(nan_run(), backend="openai", **options)


def _no_key_anywhere(exc: BaseException) -> None:
    shown = "".join(traceback.format_exception(exc)) + repr(exc)
    assert KEY not in shown and "Secret0123" not in shown


# -- requests and answers --------------------------------------------------------------------------


def test_completion_sends_the_grounded_prompt_and_the_key_only_as_a_header(server):
    e = _explain(server, max_tokens=300, temperature=0)
    assert (e.backend, e.model, e.fallback) == ("openai", "test-model", False)
    assert e.citations == ["guide/001-loss-becomes-nan"] and e.unsupported_numbers == []
    assert e.text == GROUNDED
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["model"] == "test-model" and body["stream"] is False
    assert body["max_tokens"] == 300 and body["temperature"] == 0
    assert body["messages"] == build_messages(build_grounding(nan_run()))
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in request["raw"] and KEY not in request["path"]
    dumped = e.model_dump_json()
    assert KEY not in dumped and KEY not in repr(e)


def test_no_key_means_no_authorization_header(server):
    _explain(server, api_key=None)
    assert "Authorization" not in server.requests[0]["headers"]


def test_streaming_yields_checked_sentences_as_the_server_sends_them(server):
    gate = threading.Event()
    pieces = ["What is probably going on: the loss went NaN at step 1200 [guide/001-loss-becomes-nan]. ", "Reduce learning rate ",
              "by 10x [guide/001-loss-", "becomes-nan]."]
    server.script = [Reply(events=pieces, gate=gate)]
    stream = stream_explain(nan_run(), backend="openai", base_url=server.url, model="test-model", api_key=KEY)
    chunks = iter(stream)
    first = next(chunks)
    assert first == pieces[0].strip() and not gate.is_set(), "the first sentence arrived while the server still held the rest"
    gate.set()
    rest = list(chunks)
    assert rest == [" Reduce learning rate by 10x [guide/001-loss-becomes-nan]."], "a sentence is given once it can be judged"
    result = stream.result
    assert result.text == "".join(pieces) and result.citations == ["guide/001-loss-becomes-nan"]
    body = server.requests[0]["body"]
    assert body["stream"] is True and body["model"] == "test-model"
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_stream_that_cites_nothing_falls_back_after_streaming(server):
    server.script = [Reply(events=["Just lower ", "the learning rate."])]
    stream = stream_explain(nan_run(), backend="openai", base_url=server.url, model="test-model")
    assert "".join(stream) == "Just lower the learning rate.\n\n" + stream.result.text
    assert stream.result.fallback and "[guide/001-loss-becomes-nan]" in stream.result.text
    assert stream.result.text.startswith("Note: the openai model's answer cited no knowledge-base entry")
    assert stream.result.model == "test-model"


def test_server_that_ignores_the_stream_flag_gives_one_piece(server):
    server.script = [Reply()]
    stream = stream_explain(nan_run(), backend="openai", base_url=server.url, model="test-model")
    assert "".join(stream) == GROUNDED and not stream.result.fallback


def test_content_parts_and_null_content(server):
    server.script = [Reply(body={"choices": [{"message": {"content": [{"type": "text", "text": GROUNDED}]}}]}),
                     Reply(body={"choices": [{"message": {"content": None}}]})]
    assert _explain(server).text == GROUNDED
    e = _explain(server)
    assert e.fallback and "answer was empty" in e.text


# -- errors and retries ----------------------------------------------------------------------------


def test_401_is_not_retried_and_the_error_never_shows_the_key(server):
    server.script = [Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}})]
    with pytest.raises(AdvisorError) as info:
        _explain(server, retries=3)
    assert len(server.requests) == 1
    message = str(info.value)
    assert message.startswith(f"The LLM endpoint at {server.url} refused the API key (HTTP 401): Incorrect API key provided: ***")
    assert message.count(".") >= 1 and "\n" not in message
    _no_key_anywhere(info.value)


def test_401_without_a_key_says_how_to_give_one(server):
    server.script = [Reply(status=401, body={"error": "unauthorized"})]
    with pytest.raises(AdvisorError, match="needs an API key .*set OPENAI_API_KEY"):
        _explain(server, api_key=None)


@pytest.mark.parametrize("status, body, expected", [
    (400, {"error": {"message": "max_tokens is too large"}}, r"rejected the request \(HTTP 400\): max_tokens is too large\.$"),
    (404, {"error": {"message": "model 'nope' not found"}}, r"HTTP 404\): model 'nope' not found; check that the base URL ends in /v1"),
    (403, "forbidden", r"refused the API key \(HTTP 403\): forbidden\.$"),
])
def test_other_4xx_fail_at_once(server, status, body, expected):
    server.script = [Reply(status=status, body=body)]
    with pytest.raises(AdvisorError, match=expected) as info:
        _explain(server, retries=3)
    assert len(server.requests) == 1
    _no_key_anywhere(info.value)


def test_5xx_and_429_are_retried_with_backoff_then_succeed(server):
    server.script = [Reply(status=500, body={"error": {"message": "boom"}}),
                     Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
                     Reply()]
    started = time.monotonic()
    e = _explain(server, retries=2, backoff=0.05)
    assert e.citations == ["guide/001-loss-becomes-nan"] and len(server.requests) == 3
    assert time.monotonic() - started >= 0.05 + 0.1, "waited backoff, then twice the backoff"
    assert all(r["body"] == server.requests[0]["body"] for r in server.requests)


def test_5xx_that_persists_fails_clearly(server):
    server.script = [Reply(status=503, body={"error": {"message": f"overloaded, key {KEY}"}}) for _ in range(3)]
    with pytest.raises(AdvisorError, match=r"failed after 3 attempts: HTTP 503: overloaded, key \*\*\*\.$") as info:
        _explain(server, retries=2)
    assert len(server.requests) == 3
    _no_key_anywhere(info.value)


def test_stream_is_retried_before_its_first_piece(server):
    server.script = [Reply(status=502, body="bad gateway"), Reply(events=[GROUNDED])]
    stream = stream_explain(nan_run(), backend="openai", base_url=server.url, model="test-model", backoff=0.01)
    assert "".join(stream) == GROUNDED and len(server.requests) == 2


def test_stream_401_is_not_retried(server):
    server.script = [Reply(status=401, body={"error": {"message": "bad key"}})]
    stream = stream_explain(nan_run(), backend="openai", base_url=server.url, model="m", api_key=KEY, retries=2)
    with pytest.raises(AdvisorError, match="refused the API key"):
        list(stream)
    assert len(server.requests) == 1


def test_slow_response_times_out_without_retrying(server):
    server.script = [Reply(delay=1.5)]
    started = time.monotonic()
    with pytest.raises(AdvisorError, match=r"did not answer within 0.3 s"):
        _explain(server, timeout=0.3, retries=2)
    assert time.monotonic() - started < 1.2 and len(server.requests) == 1


def test_connection_refused_is_retried_then_fails_clearly():
    with socket.socket() as s:  # a port that was free a moment ago and has nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1?api-key={KEY}"
    with pytest.raises(AdvisorError, match=rf"at http://127.0.0.1:{port}/v1 failed after 2 attempts: cannot connect") as info:
        explain(nan_run(), backend="openai", base_url=url, model="m", retries=1, backoff=0.01)
    _no_key_anywhere(info.value)


@pytest.mark.parametrize("reply, expected", [
    (Reply(body="this is not json {"), r"not JSON \(HTTP 200, 18 bytes\)"),
    (Reply(body={"object": "list", "data": []}), r"not a chat completion \(no choices\[0\]\.message\.content\)"),
    (Reply(body={"error": {"message": "model is loading"}}), r"reported an error: model is loading"),
    (Reply(raw_events=[_chunk({"content": "ok"}), "{broken"]), "sent a stream event that is not JSON"),
])
def test_malformed_answers_are_clear_errors(server, reply, expected):
    server.script = [reply]
    with pytest.raises(AdvisorError, match=expected):
        if reply.raw_events:
            list(stream_explain(nan_run(), backend="openai", base_url=server.url, model="m"))
        else:
            _explain(server)


def test_fallback_on_error_writes_the_composer_text(server):
    server.script = [Reply(status=401, body={"error": {"message": f"bad key {KEY}"}})]
    e = _explain(server, fallback_on_error=True)
    assert e.fallback and e.citations == ["guide/001-loss-becomes-nan"]
    assert "the openai backend failed (The LLM endpoint at" in e.text and "HTTP 401" in e.text
    assert KEY not in e.model_dump_json()


def test_settings_from_the_config_file(server, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text(f'[llm]\nbackend = "openai"\nbase_url = "{server.url}"\nmodel = "cfg-model"\napi_key = "{KEY}"\n'
                      'backoff = 0.01\n', encoding="utf-8")
    monkeypatch.setenv("TRAIN_ADVISOR_CONFIG", str(config))
    e = explain(nan_run(), backend=None)
    assert e.backend == "openai" and e.model == "cfg-model"
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert server.requests[0]["body"]["model"] == "cfg-model"
    assert explain(nan_run()).backend == "none", "the default stays the composer unless backend=None"


def test_reprs_hide_the_key():
    backend = OpenAICompatBackend("https://api.example.com/v1", "gpt-x", KEY)
    assert KEY not in repr(backend) and "api_key='***'" in repr(backend)
    with pytest.raises(AdvisorError, match="must start with http") as info:
        OpenAICompatBackend(f"ftp://{KEY}@host", "m", KEY)
    _no_key_anywhere(info.value)
    with pytest.raises(AdvisorError, match="must not hold credentials") as info:
        OpenAICompatBackend(f"https://user:{KEY}@api.example.com/v1", "m")
    _no_key_anywhere(info.value)


def test_parameters_a_reasoning_model_rejects_are_rewritten(server):
    server.script = [
        Reply(status=400, body={"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                                     "Use 'max_completion_tokens' instead.", "param": "max_tokens"}}),
        Reply(status=400, body={"error": {"message": "Unsupported value: 'temperature' does not support 0.2 with this model. "
                                                     "Only the default (1) value is supported.", "param": "temperature"}}),
        Reply(),
    ]
    e = _explain(server, retries=0, max_tokens=256)
    assert not e.fallback and len(server.requests) == 3
    last = server.requests[-1]["body"]
    assert last["max_completion_tokens"] == 256 and "max_tokens" not in last and "temperature" not in last
