"""`explain` and `stream_explain`: a diagnosis in, checked prose out."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field

from advisor.explain.backends import ChatBackend, make_backend
from advisor.explain.check import Checker, CheckResult, check_answer
from advisor.explain.compose import compose
from advisor.explain.grounding import Grounding, build_grounding, build_messages, prompt_text
from advisor.explain.models import CheckFinding
from advisor.explain.options import ExplainOptions, Settings, is_local_endpoint, resolve_backend, resolve_settings, sized_timeout
from advisor.models import AdvisorError, Diagnosis

log = logging.getLogger("advisor.explain")

Target = Diagnosis | str | Path | None


class Explanation(BaseModel):
    """What `explain` returns and `advisor explain --json` prints. Never holds an API key."""

    backend: str  # the backend asked for: none, openai, transformers
    model: str | None = None  # the model asked (name or path), also when the composer wrote `text`; None for `none`
    text: str  # checked: ungrounded parts removed, numbers not in the evidence marked inline
    citations: list[str] = Field(default_factory=list)  # entry ids cited in `text`, all of them from `suggestions`
    removed_citations: list[str] = Field(default_factory=list)  # ids the model cited that were not in its prompt
    unsupported_numbers: list[str] = Field(default_factory=list)  # numbers neither in the evidence nor in a cited entry
    removed_actions: list[str] = Field(default_factory=list)  # commands, code, links, paths not from a cited entry
    findings: list[CheckFinding] = Field(default_factory=list)  # everything the checker removed or marked, and why
    fallback: bool = False  # True when the composer wrote `text` in place of the backend asked for
    notes: list[str] = Field(default_factory=list)  # why a fallback happened, what the checker changed
    suggestions: list[str] = Field(default_factory=list)  # the entry ids the prompt held, in rank order
    path: str | None = None  # the run or log explained


# Reasoning models (DeepSeek-R1, Qwen3 via Ollama...) may put their thinking in the answer.
_THINKING = re.compile(r"<think>.*?(?:</think>|\Z)", re.S)


def strip_thinking(answer: str) -> str:
    answer = _THINKING.sub("", answer)
    if "</think>" in answer:  # templates that open the block in the prompt leave only the close tag
        answer = answer.split("</think>")[-1]
    return answer.strip()


class ThinkingFilter:
    """Hides <think>...</think> from streamed pieces, holding back a tag split across two pieces."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._buffer = ""
        self._inside = False

    def feed(self, piece: str) -> str:
        self._buffer += piece
        out = []
        while True:
            tag = self.CLOSE if self._inside else self.OPEN
            i = self._buffer.find(tag)
            if i < 0:
                keep = _partial_suffix(self._buffer, tag)
                if not self._inside:
                    out.append(self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep:] if keep else ""
                return "".join(out)
            if not self._inside:
                out.append(self._buffer[:i])
            self._buffer = self._buffer[i + len(tag):]
            self._inside = not self._inside

    def flush(self) -> str:
        rest = "" if self._inside else self._buffer
        self._buffer = ""
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    """How many trailing characters of `text` could be the start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


# -- the pipeline ----------------------------------------------------------------------------------


def _merged(first: list, second: list) -> list:
    return list(dict.fromkeys([*first, *second]))


class _Prepared:
    """Everything decided before any text is written: settings, backend, grounding, prompt."""

    def __init__(self, target: Target, describe: str | None, backend: str | None, options: dict[str, Any]):
        opts = ExplainOptions.from_kwargs(options)
        # Settings and backend first: a missing model or a bad config fails before a slow diagnosis.
        self.settings: Settings = resolve_settings(resolve_backend(backend, opts), opts)
        self.backend: ChatBackend = make_backend(self.settings)
        diagnosis = _diagnosis(target, describe)
        self.grounding: Grounding = build_grounding(diagnosis, top=self.settings.top)
        self.messages = build_messages(self.grounding)
        self.path = diagnosis.path
        self._size_timeout()
        log.debug("explain: backend=%r model=%r suggestions=%s", self.settings.backend, self.backend.model, self.grounding.ids)

    def _size_timeout(self) -> None:
        """A local endpoint with no timeout given gets time for this prompt (a small CPU model reads slowly)."""
        s = self.settings
        local = s.backend == "transformers" or (s.backend == "openai" and is_local_endpoint(s.base_url))
        if local and not s.timeout_given and hasattr(self.backend, "timeout"):
            self.backend.timeout = max(s.timeout, sized_timeout(len(prompt_text(self.messages)), s.max_tokens))

    @property
    def name(self) -> str:
        return self.settings.backend

    @property
    def model(self) -> str | None:
        """The model asked, kept in every result (a fallback included) so a reader knows what was tried."""
        return None if self.name == "none" else self.backend.model

    @property
    def skip_model(self) -> bool:
        """Nothing to explain: no model is asked, the composer says so."""
        return self.grounding.empty and self.name != "none"

    def composed(self, reason: str | None, check: CheckResult | None = None) -> Explanation:
        """The composer's explanation, with `reason` (why the backend's text was not used) on top;
        `check` is what the checker found in the backend's answer."""
        own = check_answer(compose(self.grounding), self.grounding)  # entry text quoted verbatim is checked too
        text = own.text
        notes = [reason] if reason else []
        if reason and self.name != "none":
            text = f"Note: {reason}\n\n{text}"
        model = check or CheckResult(text="")
        return Explanation(
            backend=self.name,
            model=self.model,
            text=text,
            citations=own.citations,
            removed_citations=_merged(model.removed_citations, own.removed_citations),
            unsupported_numbers=_merged(model.unsupported_numbers, own.unsupported_numbers),
            removed_actions=_merged(model.removed_actions, own.removed_actions),
            findings=[*model.findings, *own.findings],
            fallback=self.name != "none",
            notes=notes,
            suggestions=self.grounding.ids,
            path=self.path,
        )

    def finish(self, answer: str) -> Explanation:
        """Check the backend's whole answer; see `judged`."""
        return self.judged(check_answer(strip_thinking(answer), self.grounding))

    def judged(self, check: CheckResult) -> Explanation:
        """The checked answer, or the composer's when the answer carried an instruction to a model or
        kept no citation (no grounded advice is left)."""
        if self.name != "none" and (check.instructions or not check.citations):
            if check.instructions:
                what = "carried an instruction aimed at a model"
            elif not check.text.strip() and not check.findings:
                what = "was empty"
            elif check.removed_actions:
                what = "kept no grounded advice once the checker removed what it could not verify"
            elif check.removed_citations:
                what = "cited only entries that were not in the diagnosis"
            else:
                what = "cited no knowledge-base entry from the diagnosis"
            reason = f"the {self.name} model's answer {what}, so this explanation was written by the built-in composer instead."
            return self.composed(reason, check)
        notes = []
        if check.instructions:
            notes.append("Removed text that reads as an instruction to a model, not advice.")
        if check.removed_citations:
            notes.append(f"Removed citations of entries that were not in the prompt: {', '.join(check.removed_citations)}.")
        if check.removed_actions:
            notes.append(f"Removed commands, code, links or paths that are not in the cited entries: {', '.join(check.removed_actions)}.")
        if check.unsupported_numbers:
            notes.append(f"Numbers in the answer that are not in the evidence or the cited entries: {', '.join(check.unsupported_numbers)}.")
        return Explanation(
            backend=self.name,
            model=self.model,
            text=check.text,
            citations=check.citations,
            removed_citations=check.removed_citations,
            unsupported_numbers=check.unsupported_numbers,
            removed_actions=check.removed_actions,
            findings=check.findings,
            fallback=False,
            notes=notes,
            suggestions=self.grounding.ids,
            path=self.path,
        )

    def failed(self, error: AdvisorError) -> Explanation:
        """A backend error: raised, or the composer's text when fallback_on_error is set."""
        if not self.settings.fallback_on_error:
            raise error
        return self.composed(f"the {self.name} backend failed ({str(error).rstrip('.')}), so this explanation was written by the built-in composer instead.")


def _diagnosis(target: Target, describe: str | None) -> Diagnosis:
    if isinstance(target, Diagnosis):
        if describe and not target.describe:
            return target.model_copy(update={"describe": describe})
        return target
    if target is None and not (describe and describe.strip()):
        raise AdvisorError("Nothing to explain: give a run directory, a log file, or a description of what you see.")
    if target is not None and not isinstance(target, (str, Path)):
        raise AdvisorError(f"explain needs a Diagnosis, a run or log path, or None; got {type(target).__name__}.")
    # Lazy: the analysis loads the KB and the log readers. The one analysis service ranks as everywhere
    # else, with the user's marks: dismissed entries gone, "did not help" lowered, "helped" raised.
    from advisor.analysis import analyse
    from advisor.notes import NotesStore, resolve_target
    from advisor.readers import read_log

    notes = NotesStore()
    path = resolve_target(target, notes) if target is not None else None  # a path, `demo`, a run opened before
    return analyse(read_log(path) if path is not None else None, describe=describe, notes=notes)


def check_options(backend: str | None = "none", **options: Any) -> None:
    """Raise `AdvisorError` for options `explain` would reject, before anything slow (a diagnosis) runs."""
    make_backend(resolve_settings(resolve_backend(backend, ExplainOptions.from_kwargs(options)), ExplainOptions.from_kwargs(options)))


def explain(target: Target, describe: str | None = None, backend: str | None = "none", **options: Any) -> Explanation:
    """Explain a diagnosis in prose, grounded in its suggestions and evidence.

    `target` is a `Diagnosis`, or a run directory / log path / `demo` (or None with `describe`), read
    and ranked by `advisor.analysis.analyse` with the user's notes. `backend` is "none" (the deterministic
    composer), "openai" or "transformers"; None takes $TRAIN_ADVISOR_LLM_BACKEND or [llm] backend.
    `options` are the fields of `ExplainOptions` (base_url, model, api_key, timeout, retries,
    backoff, max_tokens, temperature, model_path, device, top, fallback_on_error, config_path).
    Raises `AdvisorError` (one sentence, no key) for bad options, unreachable endpoints and so on.
    """
    prepared = _Prepared(target, describe, backend, options)
    if prepared.skip_model:
        return prepared.composed("there was nothing to explain, so no model was asked.")
    if prepared.name == "none":
        return prepared.finish(prepared.backend.complete(prepared.messages))
    try:
        answer = prepared.backend.complete(prepared.messages)
    except AdvisorError as error:
        return prepared.failed(error)
    return prepared.finish(answer)


class ExplanationStream:
    """An explanation as it is written. Iterate it (or `.chunks()`) for text pieces, then read `.result`.

        stream = stream_explain(run, backend="openai", model="qwen2.5:7b")
        for piece in stream:
            pane.write(piece)
        pane.update(stream.result.text)

    The pieces are checked text: the answer is held back one sentence (or list item, or code block)
    at a time and each is judged before it is given, so an invented id, an ungrounded command or an
    instruction aimed at a model is never shown, and numbers not in the evidence come marked.
    Joined, the pieces are `result.text`, except on a fallback: then a last piece holds the
    composer's explanation (`result.text`, with the note why). Reading `result` before the pieces
    are all read consumes the rest. Errors are raised as `AdvisorError` while iterating (or from
    `result`), unless fallback_on_error is set.
    """

    def __init__(self, prepared: _Prepared):
        self._prepared = prepared
        self._result: Explanation | None = None
        self._iterator: Iterator[str] | None = None
        self.streamed: list[str] = []  # the pieces given so far

    def __iter__(self) -> Iterator[str]:
        return self.chunks()

    def chunks(self) -> Iterator[str]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> Explanation:
        if self._result is None:
            for _ in self.chunks():
                pass
        assert self._result is not None
        return self._result

    def close(self) -> None:
        """Stop early (a TUI pane closed); `result` is then not available."""
        if self._iterator is not None:
            self._iterator.close()  # type: ignore[attr-defined]

    def _give(self, piece: str) -> str:
        self.streamed.append(piece)
        return piece

    def _run(self) -> Iterator[str]:
        p = self._prepared
        if p.skip_model:
            self._result = p.composed("there was nothing to explain, so no model was asked.")
            yield self._give(self._result.text)
            return
        visible = ThinkingFilter()
        checker = Checker(p.grounding)
        shown: list[str] = []
        try:
            for piece in p.backend.stream(p.messages):
                checked = checker.feed(visible.feed(piece))
                if checked:
                    shown.append(checked)
                    yield self._give(checked)
        except AdvisorError as error:
            self._result = p.failed(error)  # raises unless fallback_on_error
            yield self._give(("\n\n" if shown else "") + self._result.text)
            return
        rest = checker.feed(visible.flush()) + checker.flush()
        if rest:
            shown.append(rest)
            yield self._give(rest)
        self._result = p.judged(checker.result("".join(shown)))
        if self._result.fallback:
            yield self._give(("\n\n" if shown else "") + self._result.text)


def stream_explain(target: Target, describe: str | None = None, backend: str | None = "none", **options: Any) -> ExplanationStream:
    """`explain`, streamed: returns an `ExplanationStream` (see there). Options and errors are
    checked, and the diagnosis made, before this returns; the backend runs while it is iterated."""
    return ExplanationStream(_Prepared(target, describe, backend, options))
