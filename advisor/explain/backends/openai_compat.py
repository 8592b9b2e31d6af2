"""The `openai` backend: any OpenAI-compatible chat-completions endpoint, over httpx.

That covers a local Ollama (http://localhost:11434/v1, the default, so nothing leaves the machine
unless a remote URL is configured), vLLM, llama.cpp's server, LM Studio, and hosted APIs.

Retries: 429, 5xx and connection failures are retried with exponential backoff (honouring a short
Retry-After); other 4xx (400, 401, 403, 404) fail at once since asking again cannot help. A read
timeout is not retried: a model that is too slow once will be too slow again. A stream is retried
only before its first piece arrives, so text is never repeated.

The key travels only in the Authorization header; every message raised goes through `redact`, and
URLs are shown without user info or query string.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from advisor.explain.options import ENV_API_KEY, Settings, config_file, redact
from advisor.models import AdvisorError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(520, 530))
MAX_RETRY_AFTER = 30.0
MAX_ERROR_DETAIL = 200


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again; `message` is the sentence to raise if not."""

    def __init__(self, message: str, retry_after: float | None = None, *, adapted: bool = False):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.adapted = adapted  # the request was rewritten to suit the model: try again now, not counted


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: what may appear in an error or a log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "the configured URL"


class OpenAICompatBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_tokens: int = 700,
        temperature: float | None = 0.2,
    ):
        if not model:
            raise AdvisorError(
                "No model is configured for the openai backend; pass --model, set TRAIN_ADVISOR_LLM_MODEL, "
                f"or set model in the [llm] section of {config_file()}."
            )
        if not base_url.startswith(("http://", "https://")):
            raise AdvisorError(f"The LLM base URL must start with http:// or https://, got {redact(display_url(base_url), [api_key or ''])}.")
        if urlsplit(base_url).username is not None:
            # httpx would log such a URL, and turn it into Basic auth the endpoint may not expect.
            raise AdvisorError("The LLM base URL must not hold credentials; give the key as api_key (or OPENAI_API_KEY) instead.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.temperature = temperature

    @classmethod
    def from_settings(cls, s: Settings) -> "OpenAICompatBackend":
        return cls(
            s.base_url, s.model or "", s.api_key, timeout=s.timeout, retries=s.retries, backoff=s.backoff,
            max_tokens=s.max_tokens, temperature=0.2 if s.temperature is None else s.temperature,
        )

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return f"OpenAICompatBackend(base_url={display_url(self.base_url)!r}, model={self.model!r}, api_key={key!r})"

    # -- the interface ---------------------------------------------------------------------------

    def complete(self, messages: list[dict[str, str]]) -> str:
        body = self._body(messages, stream=False)
        return self._with_retries(lambda client: self._complete_once(client, body))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        body = self._body(messages, stream=True)
        with self._client() as client:
            attempt = 0
            while True:
                started = False
                try:
                    for piece in self._stream_once(client, body):
                        started = True
                        yield piece
                    return
                except _Retryable as failure:
                    if started:
                        raise self._error(f"The LLM endpoint at {self._where} broke off its answer: {failure.message}") from None
                    if failure.adapted:
                        continue
                    if attempt >= self.retries:
                        raise self._error(self._gave_up(failure.message, attempt + 1)) from None
                    self._sleep(attempt, failure.retry_after)
                    attempt += 1

    # -- requests --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @property
    def _where(self) -> str:
        return display_url(self.base_url)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "train-advisor"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "stream": stream}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        # trust_env=False: proxies and .netrc from the environment must not silently add hops or credentials.
        return httpx.Client(timeout=timeout, headers=self._headers(), trust_env=False)

    def _with_retries(self, attempt_fn) -> str:
        with self._client() as client:
            attempt = 0
            while True:
                try:
                    return attempt_fn(client)
                except _Retryable as failure:
                    if failure.adapted:
                        continue
                    if attempt >= self.retries:
                        raise self._error(self._gave_up(failure.message, attempt + 1)) from None
                    self._sleep(attempt, failure.retry_after)
                    attempt += 1

    def _complete_once(self, client: httpx.Client, body: dict[str, Any]) -> str:
        response = self._send(lambda: client.post(self.url, json=body))
        self._adapt(body, response.status_code, response.text)
        self._raise_for_status(response.status_code, response.headers, response.text)
        try:
            data = response.json()
        except ValueError:
            raise self._error(f"The LLM endpoint at {self._where} answered with something that is not JSON "
                              f"(HTTP {response.status_code}, {len(response.content)} bytes).") from None
        return self._content(data, delta=False)

    def _stream_once(self, client: httpx.Client, body: dict[str, Any]) -> Iterator[str]:
        request = client.build_request("POST", self.url, json=body)
        response = self._send(lambda: client.send(request, stream=True))
        try:
            if response.status_code >= 400:
                response.read()
                self._adapt(body, response.status_code, response.text)
                self._raise_for_status(response.status_code, response.headers, response.text)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # A server that ignores "stream": true answers with one JSON body; give it as one piece.
                response.read()
                try:
                    data = response.json()
                except ValueError:
                    raise self._error(f"The LLM endpoint at {self._where} answered a streaming request with "
                                      "neither an event stream nor JSON.") from None
                text = self._content(data, delta=False)
                if text:
                    yield text
                return
            for line in self._lines(response):
                line = line.strip()
                if not line or line.startswith(":") or not line.startswith("data:"):
                    continue  # blank separators, SSE comments (keep-alives), event:/id: fields
                payload = line[len("data:"):].strip()
                if payload == "[DONE]":
                    return
                try:
                    data = json.loads(payload)
                except ValueError:
                    raise self._error(f"The LLM endpoint at {self._where} sent a stream event that is not JSON.") from None
                piece = self._content(data, delta=True)
                if piece:
                    yield piece
        finally:
            response.close()

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        try:
            yield from response.iter_lines()
        except httpx.TimeoutException:
            raise self._error(f"The LLM endpoint at {self._where} stopped sending for more than {self.timeout:g} s mid-answer.") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"the connection failed ({type(exc).__name__})") from None

    def _send(self, send) -> httpx.Response:
        try:
            return send()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Retryable(f"cannot connect ({type(exc).__name__})") from None
        except httpx.TimeoutException:
            raise self._error(f"The LLM endpoint at {self._where} did not answer within {self.timeout:g} s; "
                              "raise --timeout or use a smaller model.") from None
        except httpx.HTTPError as exc:
            raise self._error(f"The request to the LLM endpoint at {self._where} failed ({type(exc).__name__}).") from None

    def _adapt(self, body: dict[str, Any], status: int, text: str) -> None:
        """Rewrite the request for a 400 that names a parameter this model does not take, and ask again.

        OpenAI's reasoning models reject max_tokens (they want max_completion_tokens) and any
        temperature but the default; each rewrite removes a key, so this happens at most twice.
        """
        if status != 400:
            return
        said = text.lower()
        if "max_completion_tokens" in said and "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
        elif "temperature" in said and "temperature" in body and ("unsupported" in said or "not support" in said):
            del body["temperature"]
        else:
            return
        raise _Retryable("the model does not take one of the request's parameters", adapted=True)

    def _raise_for_status(self, status: int, headers: httpx.Headers, text: str) -> None:
        if status < 400:
            return
        detail = self._detail(text)
        if status in RETRY_STATUSES:
            raise _Retryable(f"HTTP {status}{detail}", retry_after=_retry_after(headers))
        if status in (401, 403):
            if not self._api_key:
                raise self._error(f"The LLM endpoint at {self._where} needs an API key (HTTP {status}){detail}; "
                                  f"set {ENV_API_KEY} or api_key in the [llm] section of {config_file()}.")
            raise self._error(f"The LLM endpoint at {self._where} refused the API key (HTTP {status}){detail}.")
        if status == 404:
            raise self._error(f"The LLM endpoint at {self._where} has no such path or model (HTTP 404){detail}; "
                              "check that the base URL ends in /v1 and the model name is right.")
        raise self._error(f"The LLM endpoint at {self._where} rejected the request (HTTP {status}){detail}.")

    def _detail(self, text: str) -> str:
        """': <the server's error message>', short and with keys masked, or ''."""
        message: Any = text
        try:
            data = json.loads(text)
            error = data.get("error", data) if isinstance(data, dict) else data
            message = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            pass
        message = " ".join(str(message).split())
        if not message:
            return ""
        message = redact(message, [self._api_key or ""])
        if len(message) > MAX_ERROR_DETAIL:
            message = message[: MAX_ERROR_DETAIL - 1] + "…"
        return f": {message.rstrip('.')}"

    def _content(self, data: Any, *, delta: bool) -> str:
        """The text of one completion (delta=False) or one stream event (delta=True)."""
        if isinstance(data, dict) and "error" in data and not data.get("choices"):
            raise self._error(f"The LLM endpoint at {self._where} reported an error{self._detail(json.dumps(data))}.")
        try:
            choice = data["choices"][0]
            if delta and not choice.get("delta"):
                return ""  # a final event that carries only finish_reason or usage
            content = choice["delta" if delta else "message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            if delta and isinstance(data, dict) and data.get("choices") == []:
                return ""  # usage-only events some servers send last
            raise self._error(f"The LLM endpoint at {self._where} answered with JSON that is not a chat completion "
                              "(no choices[0].message.content).") from None
        if content is None:
            return ""
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)

    def _sleep(self, attempt: int, retry_after: float | None) -> None:
        delay = self.backoff * (2**attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        time.sleep(delay)

    def _gave_up(self, message: str, attempts: int) -> str:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return f"The LLM endpoint at {self._where} failed after {tries}: {message}."

    def _error(self, message: str) -> AdvisorError:
        return AdvisorError(redact(message, [self._api_key or ""]))


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
