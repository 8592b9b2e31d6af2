"""The `none` backend: the deterministic composer behind the chat interface.

It reads the grounding back out of the prompt's data block, so it writes from exactly what an LLM
would have been shown and nothing else.
"""

from __future__ import annotations

from typing import Iterator

from advisor.explain.compose import compose_sections
from advisor.explain.grounding import grounding_from_messages

SECTION_SEPARATOR = "\n\n"


class ComposerBackend:
    name = "none"
    model = None

    def complete(self, messages: list[dict[str, str]]) -> str:
        return SECTION_SEPARATOR.join(compose_sections(grounding_from_messages(messages)))

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        for i, section in enumerate(compose_sections(grounding_from_messages(messages))):
            yield (SECTION_SEPARATOR if i else "") + section

    def __repr__(self) -> str:
        return "ComposerBackend()"
