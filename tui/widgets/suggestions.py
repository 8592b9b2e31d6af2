"""The ranked suggestions: one row each (rank, mark, title, strength, why).

The title takes whatever width the other columns leave; the "why" column (short words for how the
entry was found) only shows when the titles keep room enough beside it. Scores stay out of the list:
`strength` says in words how well an entry is supported.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from tui.widgets.entry import SEVERITY_STYLE, STRENGTH_STYLE, strength, why

MARK_SYMBOL = {"tried": ("◐", "#ffd75f"), "helped": ("✓", "bold #87d787"), "did not help": ("✗", "bold #ff5f5f"), "dismissed": ("–", "dim")}
FIXED = {"rank": 2, "mark": 2, "strength": 9}
WHY_WIDTH = 18  # "signal+search · helped" shortened; the detail pane says it in full
MIN_TITLE_WITH_WHY = 48  # narrower than this, the title gets the why column's room
NEW = "★ "


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
    """Rows keyed by entry id. `show(suggestions, marks, new_ids)` keeps the cursor on the same entry
    (not the same row) when rows move."""

    DEFAULT_CSS = """
    SuggestionTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._shown: tuple[list, dict, set, list] = ([], {}, set(), [])
        self._built_width = 0
        self.with_why = False

    def on_mount(self) -> None:
        self._build_columns()

    def _widths(self) -> tuple[int, bool]:
        """(title width, whether the why column fits)."""
        width = self.scrollable_content_region.width or self.size.width or 78
        fixed = sum(FIXED.values())
        pad = 2 * self.cell_padding
        title = width - fixed - pad * (len(FIXED) + 1) - 1
        if title - WHY_WIDTH - pad >= MIN_TITLE_WITH_WHY:
            return title - WHY_WIDTH - pad, True
        return max(12, title), False

    def _build_columns(self) -> None:
        self.clear(columns=True)
        self._built_width = self.size.width
        title_width, self.with_why = self._widths()
        self.add_column("#", width=FIXED["rank"], key="rank")
        self.add_column("✓", width=FIXED["mark"], key="mark")
        self.add_column("Suggestion", width=title_width, key="title")
        self.add_column("Strength", width=FIXED["strength"], key="strength")
        if self.with_why:
            self.add_column("Why", width=WHY_WIDTH, key="why")

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

    def show(self, suggestions: list, marks: dict, new_ids: set[str] | None = None, keep: str | None = None, dismissed: list | None = None) -> None:
        """`dismissed`: suggestions the user dismissed, listed after the ranking (dimmed) when shown."""
        keep = keep if keep is not None else self.current_id
        self._shown = (list(suggestions), dict(marks), set(new_ids or ()), list(dismissed or ()))
        self._fill(*self._shown, keep=keep)

    def seen(self, entry_id: str) -> None:
        """The user looked at this row: drop its ★ (in place, the rows do not move)."""
        suggestions, marks, new_ids, dismissed = self._shown
        if entry_id not in new_ids:
            return
        new_ids.discard(entry_id)
        sug = next((x for x in suggestions if x.id == entry_id), None)
        if sug is not None and entry_id in self.rows:
            self.update_cell(entry_id, "title", Text(_truncate(sug.title, self.columns["title"].width)))

    def _fill(self, suggestions: list, marks: dict, new_ids: set, dismissed: list, keep: str | None = None) -> None:
        old_row = self.cursor_row
        self.clear()
        width = self.columns["title"].width if "title" in self.columns else self._widths()[0]
        for i, s in enumerate(suggestions, 1):
            title = Text()
            if s.id in new_ids:
                title.append(NEW, style="bold #ffd75f")
                title.append(_truncate(s.title, width - len(NEW)), style="bold #ffd75f")
            else:
                title.append(_truncate(s.title, width))
            level = strength(s)
            cells = [
                Text(str(i), style=SEVERITY_STYLE.get(s.severity, "dim"), justify="right"),
                mark_text(marks.get(s.id)),
                title,
                Text(level, style=STRENGTH_STYLE.get(level, "")),
            ]
            if self.with_why:
                cells.append(Text(_truncate(why(s, short=True), WHY_WIDTH), style="dim"))
            self.add_row(*cells, key=s.id)
        for s in dismissed:
            cells = [Text("–", style="dim", justify="right"), mark_text(marks.get(s.id)), Text(_truncate(s.title, width), style="dim strike"), Text("dismissed", style="dim")]
            if self.with_why:
                cells.append(Text("x: restore", style="dim"))
            self.add_row(*cells, key=s.id)
        ids = [s.id for s in suggestions] + [s.id for s in dismissed]
        if not ids:
            return
        row = ids.index(keep) if keep in ids else min(max(old_row, 0), len(ids) - 1)
        self.move_cursor(row=row, animate=False, scroll=True)
