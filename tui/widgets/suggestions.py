"""The ranked suggestions: one row each (rank, title, source badge, score, severity, signals, mark)."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from tui.widgets.entry import SEVERITY_SHORT, SEVERITY_STYLE, SOURCE_STYLE

MARK_SYMBOL = {"tried": ("◐", "#ffd75f"), "helped": ("✓", "bold #87d787"), "did not help": ("✗", "bold #ff5f5f"), "dismissed": ("–", "dim")}
FIXED = {"rank": 2, "source": 7, "score": 5, "sev": 4, "sig": 3, "mark": 2}


def mark_text(note) -> Text:
    if note is None:
        return Text("")
    sym, style = MARK_SYMBOL.get(note.status, ("?", ""))
    t = Text(sym, style=style)
    if note.note:
        t.append("✎", style="dim")
    return t


def _truncate(title: str, width: int) -> str:
    title = " ".join(title.split())
    return title if len(title) <= width else title[: max(1, width - 1)] + "…"


class SuggestionTable(DataTable):
    """Rows keyed by entry id. `show(suggestions, marks, new_ids)` keeps the cursor on the same entry."""

    DEFAULT_CSS = """
    SuggestionTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._shown: tuple[list, dict, set] = ([], {}, set())
        self._built_width = 0

    def on_mount(self) -> None:
        self._build_columns()

    def _title_width(self) -> int:
        width = self.scrollable_content_region.width or self.size.width or 78
        pad = 2 * self.cell_padding * (len(FIXED) + 1)
        return max(12, width - sum(FIXED.values()) - pad - 1)

    def _build_columns(self) -> None:
        self.clear(columns=True)
        self._built_width = self.size.width
        self.add_column("#", width=FIXED["rank"], key="rank")
        self.add_column("Suggestion", width=self._title_width(), key="title")
        self.add_column("Source", width=FIXED["source"], key="source")
        self.add_column("Score", width=FIXED["score"], key="score")
        self.add_column("Sev", width=FIXED["sev"], key="sev")
        self.add_column("Sig", width=FIXED["sig"], key="sig")
        self.add_column("✓", width=FIXED["mark"], key="mark")

    def on_resize(self, event: events.Resize) -> None:
        if self.size.width != self._built_width:
            current = self.current_id
            self._build_columns()
            self._fill(*self._shown, keep=current)

    @property
    def current_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return key.value

    def show(self, suggestions: list, marks: dict, new_ids: set[str] | None = None, keep: str | None = None) -> None:
        keep = keep if keep is not None else self.current_id
        self._shown = (list(suggestions), dict(marks), set(new_ids or ()))
        self._fill(*self._shown, keep=keep)

    def _fill(self, suggestions: list, marks: dict, new_ids: set, keep: str | None = None) -> None:
        old_row = self.cursor_row
        self.clear()
        width = self._title_width()
        for i, s in enumerate(suggestions, 1):
            title = Text()
            if s.id in new_ids:
                title.append("★ ", style="bold #ffd75f")
                title.append(_truncate(s.title, width - 2), style="bold #ffd75f")
            else:
                title.append(_truncate(s.title, width))
            self.add_row(
                Text(str(i), style="dim", justify="right"),
                title,
                Text(s.source[: FIXED["source"]], style=SOURCE_STYLE.get(s.source, "bold")),
                Text(f"{s.score:.2f}", justify="right"),
                Text(SEVERITY_SHORT.get(s.severity, s.severity), style=SEVERITY_STYLE.get(s.severity, "")),
                Text(str(len(s.evidence)), justify="right"),
                mark_text(marks.get(s.id)),
                key=s.id,
            )
        if not suggestions:
            return
        ids = [s.id for s in suggestions]
        row = ids.index(keep) if keep in ids else min(max(old_row, 0), len(ids) - 1)
        self.move_cursor(row=row, animate=False)
