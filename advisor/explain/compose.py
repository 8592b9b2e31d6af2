"""The deterministic composer: an explanation written from the grounding alone, with templated sentences.

It is the `none` backend, the fallback when a model's answer is not kept, and the yardstick the tests
hold LLM answers to. Every number it writes comes from a signal, every piece of advice is an entry's
own step or expected outcome, and every entry it mentions is cited as [id]. Fixes come first: they
are what a person opens an explanation for; each signal then gets one sentence with its numbers.
"""

from __future__ import annotations

from advisor.explain.models import GroundedSignal, GroundedSuggestion, Grounding
from advisor.numbers import format_number

HEADING_FIXES = "Fixes to try first"
HEADING_GOING_ON = "What is probably going on"
HEADING_CHECK = "How to tell if it worked"
HEADING_NOTES = "Notes"
HEADINGS = (HEADING_FIXES, HEADING_GOING_ON, HEADING_CHECK, HEADING_NOTES)

NOTHING_TO_EXPLAIN = (
    "Nothing to explain: the diagnosis found no signals in the run and no knowledge-base entry that matches. "
    "A log with more steps, or a description of what you see (--describe), gives the advisor something to go on."
)

# Why a suggestion was ranked, one phrase per Suggestion.matched_by value (advisor.models.MATCHED_BY; a test
# checks that every value has one).
MATCHED_BY_PHRASES: dict[str, str] = {
    "link": "the knowledge base links this signal to it",
    "search": "a knowledge-base search on the symptoms ranks it high",
    "link+search": "the knowledge base links this signal to it and a search on the symptoms finds it too",
    "describe": "it matches your description",
    "history": "it helped on your earlier runs with the same signals",
    "linked-fix": "the run analysis names it as a fix for a problem found here",
    "notes": "your own notes tie it to this signal",
}


def _where(s: GroundedSignal) -> str:
    steps = (f"step {format_number(s.start_step)}" if s.start_step == s.end_step
             else f"steps {format_number(s.start_step)} to {format_number(s.end_step)}")
    if s.start_epoch is not None and s.end_epoch is not None:
        steps += (f", epoch {format_number(s.start_epoch)}" if s.start_epoch == s.end_epoch
                  else f", epochs {format_number(s.start_epoch)} to {format_number(s.end_epoch)}")
    return steps


def signal_sentence(s: GroundedSignal) -> str:
    """What was seen, in one sentence with its numbers: the detector's summary, else its value and threshold."""
    if s.summary:
        return f"{s.summary.rstrip('.')} ({s.metric}, {_where(s)})."
    measured = []
    if s.value is not None:
        measured.append(f"value {format_number(s.value)}")
    if s.threshold is not None:
        measured.append(f"threshold {format_number(s.threshold)}")
    tail = f": {', '.join(measured)}" if measured else ""
    return f"{s.kind.replace('_', ' ')} on {s.metric} at {_where(s)}{tail}."


def going_on(g: Grounding) -> str:
    lines = [HEADING_GOING_ON]
    if g.signals:
        lines += [f"- [{s.severity}] {signal_sentence(s)}" for s in g.signals]
    else:
        source = "your description" if g.user_description else "the knowledge base"
        read = "No log was read" if g.run is None else "The log gave no measured signal"
        lines.append(f"- {read}; the suggestions below come from {source}.")
    return "\n".join(lines)


MAX_WHY_SIGNALS = 2  # the rest are counted: a "why" a person reads, not a list of every signal


def _why(sug: GroundedSuggestion, g: Grounding) -> str:
    reasons = []
    for ref in sug.evidence[:MAX_WHY_SIGNALS]:
        s = g.signal(ref.signal, ref.metric)
        where = f" at {_where(s)}" if s else ""
        reasons.append(f"the {ref.signal} signal on {ref.metric}{where}")
    more = len(sug.evidence) - MAX_WHY_SIGNALS
    if more > 0:
        reasons.append(f"and {more} more signal{'s' if more > 1 else ''} of this run")
    how = set(sug.matched_by)
    if "link+search" in how:  # one phrase says both
        how -= {"link", "search"}
    because = [MATCHED_BY_PHRASES[m] for m in sug.matched_by if m in how and m in MATCHED_BY_PHRASES]
    text = f"addresses {'; '.join(reasons)}" if reasons else "no signal in this run points to it directly"
    if because:
        text += "; found because " + " and ".join(dict.fromkeys(because))
    return f"{text} ({sug.severity} severity)."


def origin(sug: GroundedSuggestion) -> str:
    """Where the entry's words come from, as the composer labels them."""
    return sug.from_user or "the entry"


def fix_block(sug: GroundedSuggestion, g: Grounding) -> str:
    title = f"{sug.rank}. {sug.title} [{sug.id}]"
    if sug.from_user:
        title += f" (from {sug.from_user}, not the shipped knowledge base)"
    lines = [title, f"   Why: {_why(sug, g)}"]
    if sug.steps:
        lines.append(f"   Steps (from {origin(sug)}):")
        lines += [f"   - {step}" for step in sug.steps]
    else:
        lines.append(f"   The entry lists no steps; read it with `kb show {sug.id}`.")
    if sug.expected_outcome:
        lines.append(f"   Expected outcome (from {origin(sug)}): {sug.expected_outcome}")
    return "\n".join(lines)


def fixes(g: Grounding) -> str:
    if not g.suggestions:
        return f"{HEADING_FIXES}\n- The knowledge base has no entry that matches these signals."
    intro = "In ranked order: try the first one first, and change one thing per run so the next log shows what helped."
    return "\n".join([HEADING_FIXES, intro, "", "\n\n".join(fix_block(s, g) for s in g.suggestions)])


def check(g: Grounding) -> str:
    lines = [HEADING_CHECK]
    if g.signals:
        lines += [f"- {s.how_to_tell}" for s in g.signals if s.how_to_tell]  # no capitalising: metric names are case-sensitive
    else:
        lines.append("- No signal was measured, so compare the next run's log with what you described, "
                     "and run `advisor diagnose` on it to see whether anything fires.")
    return "\n".join(lines)


def notes(g: Grounding) -> str:
    return "\n".join([HEADING_NOTES, *[f"- {n}" for n in g.notes]]) if g.notes else ""


def compose_sections(g: Grounding) -> list[str]:
    """The explanation as sections, in order (the streaming `none` backend yields them one by one)."""
    if g.empty:
        return [s for s in (NOTHING_TO_EXPLAIN, notes(g)) if s]
    return [s for s in (fixes(g), going_on(g), check(g), notes(g)) if s]


def compose(g: Grounding) -> str:
    return "\n\n".join(compose_sections(g))
