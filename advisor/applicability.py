"""Which settings a KB entry is about, which settings a run has, and whether the entry fits the run.

Advice must fit the run: an entry about a VQ codebook is no help to a plain MLP. Both sides are
described with the settings of advisor/applicability.toml (VQ, multi-term loss, joint-embedding SSL,
contrastive, attention, classification, mixed precision, RL/preference tuning...):

- an entry is about the settings its own title, symptoms, causes and root cause name; it fits a run
  that has any of them (an entry naming none fits every run). Entries of one project's own analysis
  (`specific_sources`) fit only a run that has every setting named in their text (body included) and
  the project's own settings (those named by most entries of that document);
- a run has the settings its series names and roles, its probe readings (views, codes, attention,
  logits...), the module types and metadata the probe recorded, and the user's --describe text show.

No torch here: the profile is read from the run's names and metadata only.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

from advisor.models import Run
from kb.models import Entry


@dataclass(frozen=True)
class Setting:
    name: str
    entry: tuple[re.Pattern, ...] = ()
    series: tuple[re.Pattern, ...] = ()
    roles: frozenset[str] = frozenset()
    modules: tuple[re.Pattern, ...] = ()
    meta: tuple[re.Pattern, ...] = ()
    implies: tuple[str, ...] = ()
    possible_in_logs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rules:
    settings: dict[str, Setting]
    specific_sources: frozenset[str]
    project_share: float


def _patterns(items: Iterable[str]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in items)


@lru_cache(maxsize=1)
def rules() -> Rules:
    data = tomllib.loads((resources.files("advisor") / "applicability.toml").read_text(encoding="utf-8"))
    settings = {
        name: Setting(
            name=name,
            entry=_patterns(spec.get("entry", [])),
            series=_patterns(spec.get("series", [])),
            roles=frozenset(spec.get("roles", [])),
            modules=_patterns(spec.get("modules", [])),
            meta=_patterns(spec.get("meta", [])),
            implies=tuple(spec.get("implies", [])),
            possible_in_logs=tuple(spec.get("possible_in_logs", [])),
        )
        for name, spec in data.get("settings", {}).items()
    }
    return Rules(
        settings=settings,
        specific_sources=frozenset(data.get("specific_sources", [])),
        project_share=float(data.get("project_share", 0.5)),
    )


def settings_named_in(text: str) -> frozenset[str]:
    """The settings a piece of text names (an entry's text, or what the user describes)."""
    if not text:
        return frozenset()
    return frozenset(s.name for s in rules().settings.values() if any(p.search(text) for p in s.entry))


def _core_text(entry: Entry) -> str:
    return "\n".join(p for p in [entry.title, *entry.symptoms, *entry.causes, entry.root_cause] if p)


_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)


def _full_text(entry: Entry) -> str:
    # code blocks left out: `class Foo`, `filter(...)` in a snippet say nothing about the setting
    return _CODE_BLOCK.sub(" ", "\n".join(p for p in [_core_text(entry), entry.body] if p))


@dataclass(frozen=True)
class EntryProfile:
    """What an entry is about. `any_of`: the run needs one of these; `all_of`: it needs every one."""

    any_of: frozenset[str] = frozenset()
    all_of: frozenset[str] = frozenset()

    @property
    def settings(self) -> frozenset[str]:
        return self.any_of | self.all_of

    def fits(self, run_settings: frozenset[str]) -> bool:
        if self.all_of and not self.all_of <= run_settings:
            return False
        return not self.any_of or bool(self.any_of & run_settings)


def entry_profile(entry: Entry, project_settings: frozenset[str] = frozenset()) -> EntryProfile:
    """The entry's profile; `project_settings`: those of its project, for a project's own analysis."""
    if entry.source in rules().specific_sources:
        return EntryProfile(all_of=settings_named_in(_full_text(entry)) | project_settings)
    return EntryProfile(any_of=settings_named_in(_core_text(entry)))


def project_settings(entries: Iterable[Entry]) -> frozenset[str]:
    """The settings most entries of one project's document name: what the project is about."""
    entries = list(entries)
    counts: dict[str, int] = {}
    for e in entries:
        for name in settings_named_in(_full_text(e)):
            counts[name] = counts.get(name, 0) + 1
    need = rules().project_share * len(entries)
    return frozenset(name for name, n in counts.items() if n >= need)


@dataclass
class RunProfile:
    """The settings a run shows it has (`has`), and those a plain log cannot rule out (`possible`)."""

    has: frozenset[str] = frozenset()
    possible: frozenset[str] = frozenset()
    evidence: dict[str, list[str]] = field(default_factory=dict)  # setting -> what showed it

    @property
    def settings(self) -> frozenset[str]:
        return self.has | self.possible


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _flatten(v, prefix)
    else:
        yield prefix, value


def _module_names(meta: dict[str, Any]) -> list[str]:
    """Every class, type or layer name the probe recorded about the model (whatever the key)."""
    names: list[str] = []
    for key in ("model", "modules", "module_types"):
        for _, v in _flatten(meta.get(key)):
            if isinstance(v, str):
                names.append(v)
    for k, _ in _flatten(meta.get("model") or {}):
        names.append(k.rsplit(".", 1)[-1])  # {"module_types": {"MultiheadAttention": 2}} names types as keys
    return names


def run_profile(run: Run, describe: str | None = None) -> RunProfile:
    """The settings a run has, from its series, roles, probe metadata and the user's description."""
    evidence: dict[str, list[str]] = {}
    meta = run.meta or {}
    meta_items = [f"{k}={str(v).lower()}" for k, v in _flatten(meta) if v is not None and not isinstance(v, (dict, list))]
    modules = _module_names(meta)
    for s in rules().settings.values():
        shown: list[str] = []
        for name, series in run.series.items():
            if series.role in s.roles or any(p.search(name) for p in s.series):
                shown.append(f"series {name}")
                break
        shown += [f"module {m}" for m in modules if any(p.search(m) for p in s.modules)][:1]
        shown += [f"meta {m}" for m in meta_items if any(p.search(m) for p in s.meta)][:1]
        if shown:
            evidence[s.name] = shown
    for name in settings_named_in(describe or ""):
        evidence.setdefault(name, []).append("described by the user")
    has = set(evidence)
    pending = list(has)
    while pending:  # a setting implies others (a contrastive loss is self-supervised learning)
        implied = rules().settings.get(pending.pop())
        for other in implied.implies if implied else ():
            if other not in has:
                has.add(other)
                evidence.setdefault(other, []).append(f"implied by {implied.name}")
                pending.append(other)
    possible: set[str] = set()
    if run.format != "probe":  # a plain log: what only model metadata could show stays possible
        for name in has:
            possible.update(rules().settings[name].possible_in_logs)
    return RunProfile(has=frozenset(has), possible=frozenset(possible - has), evidence=evidence)


class Applicability:
    """Entry profiles for one KB, computed once per KB (entries change only when the KB is rebuilt)."""

    def __init__(self, kb) -> None:
        self._kb = kb
        self._profiles: dict[str, EntryProfile] = {}
        self._projects: dict[str, frozenset[str]] = {}

    def project_settings(self, source: str) -> frozenset[str]:
        if source not in self._projects:
            self._projects[source] = project_settings(self._kb.entries(source))
        return self._projects[source]

    def profile(self, entry: Entry) -> EntryProfile:
        if entry.id not in self._profiles:
            project = self.project_settings(entry.source) if entry.source in rules().specific_sources else frozenset()
            self._profiles[entry.id] = entry_profile(entry, project)
        return self._profiles[entry.id]

    def fits(self, entry: Entry, run: RunProfile | None) -> bool:
        return run is None or self.profile(entry).fits(run.settings)
