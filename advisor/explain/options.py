"""Options for `explain()` and where each one comes from: the call, the environment, the config file.

Precedence, highest first: a keyword passed to `explain()` (the CLI's flags), the environment, the
`[llm]` section of the config file, the defaults below. The API key is held only in `Settings.api_key`
(never in a repr) and every error that could quote it goes through `redact`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from advisor.models import AdvisorError

BACKENDS = ("none", "openai", "transformers")

ENV_API_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_MODEL = "TRAIN_ADVISOR_LLM_MODEL"
ENV_MODEL_PATH = "TRAIN_ADVISOR_LLM_MODEL_PATH"
ENV_BACKEND = "TRAIN_ADVISOR_LLM_BACKEND"
ENV_CONFIG = "TRAIN_ADVISOR_CONFIG"  # a config file to read instead of the user one (tests, CI)

# Ollama's OpenAI-compatible endpoint: with nothing configured, requests stay on this machine.
DEFAULT_BASE_URL = "http://localhost:11434/v1"
DEFAULT_TIMEOUT = 60.0
# With no --timeout, a local endpoint gets time for the prompt it is sent: a small model on a laptop
# CPU reads ~20 tokens/s of prompt (4k tokens took 90 s in a real trial) and writes a few tokens/s.
PROMPT_CHARS_PER_SECOND = 80.0  # ~4 characters a token
ANSWER_TOKENS_PER_SECOND = 5.0
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"})
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_TOKENS = 700
DEFAULT_TOP = 5


@dataclass
class ExplainOptions:
    """Every keyword `explain()` and `stream_explain()` take besides target, describe and backend.

    None means "not given here": the environment, the config file or the default decides.
    """

    base_url: str | None = None  # openai: the endpoint, up to and including /v1
    model: str | None = None  # openai: the model name; transformers: a directory works too
    api_key: str | None = field(default=None, repr=False)
    timeout: float | None = None  # seconds per request (openai) or per generation (transformers)
    retries: int | None = None  # openai: extra attempts on 429, 5xx and connection errors
    backoff: float | None = None  # openai: first retry delay in seconds, doubled each time
    max_tokens: int | None = None  # longest answer, in tokens
    temperature: float | None = None  # 0 = greedy; openai default 0.2, transformers default 0
    model_path: str | None = None  # transformers: a local model directory
    device: str | None = None  # transformers: "cpu", "cuda", "cuda:1"...; default cuda when there is one
    top: int | None = None  # how many ranked suggestions go into the prompt
    fallback_on_error: bool = False  # a backend error gives the composer's text instead of raising
    config_path: str | Path | None = None  # a config file instead of the user one

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "ExplainOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise AdvisorError(f"explain() got an unknown option {unknown[0]!r}; known options: {', '.join(sorted(known))}.")
        return cls(**options)


# Keys the [llm] section may hold, with the type each must have.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "backend": (str,),
    "base_url": (str,),
    "model": (str,),
    "api_key": (str,),
    "api_key_env": (str,),  # the name of an environment variable holding the key
    "timeout": (int, float),
    "retries": (int,),
    "backoff": (int, float),
    "max_tokens": (int,),
    "temperature": (int, float),
    "model_path": (str,),
    "device": (str,),
    "top": (int,),
}


def config_file(config_path: str | Path | None = None) -> Path:
    """The config file: the one given, $TRAIN_ADVISOR_CONFIG, or train-advisor/config.toml in the user config dir."""
    if config_path:
        return Path(config_path).expanduser()
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("train-advisor", appauthor=False)) / "config.toml"


def read_llm_config(config_path: str | Path | None = None) -> dict[str, Any]:
    """The `[llm]` section of the config file, checked; {} when there is no file."""
    path = config_file(config_path)
    if not path.is_file():
        if config_path:
            raise AdvisorError(f"Config file {path} does not exist.")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # The message names the line, never the content, so a key in the file is not echoed.
        raise AdvisorError(f"Cannot read config file {path}: {type(exc).__name__} {_position(exc)}".rstrip() + ".") from None
    section = data.get("llm", {})
    if not isinstance(section, dict):
        raise AdvisorError(f"Config file {path}: [llm] must be a table.")
    for key, value in section.items():
        if key not in CONFIG_KEYS:
            raise AdvisorError(f"Config file {path}: unknown key {key!r} in [llm]; known keys: {', '.join(CONFIG_KEYS)}.")
        if isinstance(value, bool) or not isinstance(value, CONFIG_KEYS[key]):
            raise AdvisorError(f"Config file {path}: [llm] {key} must be a {CONFIG_KEYS[key][0].__name__}.")
    return dict(section)


def _position(exc: Exception) -> str:
    line = getattr(exc, "lineno", None)
    return f"at line {line}" if line else ""


@dataclass
class Settings:
    """The resolved settings one backend runs with."""

    backend: str
    base_url: str
    model: str | None
    api_key: str | None = field(repr=False)
    timeout: float
    retries: int
    backoff: float
    max_tokens: int
    temperature: float | None
    model_path: str | None
    device: str | None
    top: int
    fallback_on_error: bool
    timeout_given: bool = False  # the timeout came from the call, the environment or the config, not the default

    def secrets(self) -> list[str]:
        return [self.api_key] if self.api_key else []


def resolve_backend(backend: str | None, options: ExplainOptions) -> str:
    """The backend name: the one given, else $TRAIN_ADVISOR_LLM_BACKEND, else [llm] backend, else none."""
    name = backend or os.environ.get(ENV_BACKEND) or read_llm_config(options.config_path).get("backend") or "none"
    name = name.strip().lower()
    if name not in BACKENDS:
        raise AdvisorError(f"Unknown explain backend {name!r}; choose one of: {', '.join(BACKENDS)}.")
    return name


def resolve_settings(backend: str, options: ExplainOptions) -> Settings:
    """Merge the call's options over the environment over the config file over the defaults."""
    config = read_llm_config(options.config_path) if backend != "none" else {}
    env = os.environ

    def pick(name: str, env_name: str | None, default: Any) -> Any:
        value = getattr(options, name)
        if value is not None:
            return value
        if env_name and env.get(env_name):
            return env[env_name]
        if name in config:
            return config[name]
        return default

    api_key = options.api_key or env.get(ENV_API_KEY) or config.get("api_key")
    if not api_key and config.get("api_key_env"):
        api_key = env.get(config["api_key_env"])
    settings = Settings(
        backend=backend,
        base_url=str(pick("base_url", ENV_BASE_URL, DEFAULT_BASE_URL)).rstrip("/"),
        model=pick("model", ENV_MODEL, None),
        api_key=api_key or None,
        timeout=float(pick("timeout", None, DEFAULT_TIMEOUT)),
        retries=int(pick("retries", None, DEFAULT_RETRIES)),
        backoff=float(pick("backoff", None, DEFAULT_BACKOFF)),
        max_tokens=int(pick("max_tokens", None, DEFAULT_MAX_TOKENS)),
        temperature=pick("temperature", None, None),
        model_path=pick("model_path", ENV_MODEL_PATH, None),
        device=pick("device", None, None),
        top=int(pick("top", None, DEFAULT_TOP)),
        fallback_on_error=bool(options.fallback_on_error),
        timeout_given=options.timeout is not None or "timeout" in config,
    )
    if settings.timeout <= 0:
        raise AdvisorError("The explain timeout must be a positive number of seconds.")
    if settings.retries < 0 or settings.max_tokens <= 0 or settings.top <= 0:
        raise AdvisorError("retries must be 0 or more, and max_tokens and top must be positive.")
    return settings


def is_local_endpoint(base_url: str) -> bool:
    """True for an endpoint on this machine or the local network (Ollama, llama.cpp, vLLM on a box nearby)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return False
    if host in LOCAL_HOSTS or host.endswith((".local", ".localhost", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def sized_timeout(prompt_chars: int, max_tokens: int) -> float:
    """Seconds a slow local model may need to read `prompt_chars` of prompt and write `max_tokens`."""
    return max(DEFAULT_TIMEOUT, round(prompt_chars / PROMPT_CHARS_PER_SECOND + max_tokens / ANSWER_TOKENS_PER_SECOND))


# Tokens that look like API keys (OpenAI sk-..., bearer tokens echoed by servers): masked even when
# they are not the configured key, since a server's error body may quote a key we were never given.
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-]{8,}")


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with every secret and anything shaped like an API key replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub("***", text)
