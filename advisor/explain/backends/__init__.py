"""The backends that write an explanation, behind one interface.

A backend takes the chat messages `grounding.build_messages` made and returns the answer, whole
(`complete`) or in pieces as they come (`stream`). It raises `AdvisorError` with one sentence that
never holds an API key. Backends load lazily: `none` needs nothing, `openai` httpx, `transformers`
torch and transformers.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from advisor.explain.options import Settings
from advisor.models import AdvisorError

Messages = list[dict[str, str]]


@runtime_checkable
class ChatBackend(Protocol):
    name: str  # "none", "openai", "transformers"
    model: str | None  # what wrote the text, for the Explanation (a model name or path; None for the composer)

    def complete(self, messages: Messages) -> str:
        """The whole answer."""
        ...

    def stream(self, messages: Messages) -> Iterator[str]:
        """The answer in pieces, in order; joined they equal what `complete` would return."""
        ...


def make_backend(settings: Settings) -> ChatBackend:
    if settings.backend == "none":
        from advisor.explain.backends.composer import ComposerBackend

        return ComposerBackend()
    if settings.backend == "openai":
        from advisor.explain.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend.from_settings(settings)
    if settings.backend == "transformers":
        from advisor.explain.backends.local_transformers import TransformersBackend

        return TransformersBackend.from_settings(settings)
    raise AdvisorError(f"Unknown explain backend {settings.backend!r}.")


__all__ = ["ChatBackend", "Messages", "make_backend"]
