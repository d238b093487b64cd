"""The entry list: a virtualized Line-API view, so 100,000 entries cost one screenful.

Only the visible rows are rendered (`render_line`). It scrolls itself (a top
row, a drawn scrollbar) instead of being a ScrollView: a ScrollView's virtual
size changes with every filter keystroke, and each change re-lays-out and
repaints the whole screen; this way a keystroke repaints only the list. Filtering works on
precomputed lower-case haystacks ("name service tags") and narrows the last
result when the query only grew, so each keystroke scans fewer rows.
"""

from __future__ import annotations

import bisect
import re
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click, MouseScrollDown, MouseScrollUp
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from credd.protocol import DueReport, EntryMeta
from credd.rules import DEFAULT_ROTATION, DUE, LABELS, REASON_LABELS, Periods, State, entry_state
from credtui.format import age

#: Reasons of the due report that highlight a row like a due state: something to do now
#: (expiring and unused have their label, but are not urgent).
_HIGHLIGHTED = frozenset({"compromised", "pending", "check_failed", "duplicate", "short"})


def _mark(state: State, reasons: tuple[str, ...], updated_ago: float) -> str:
    """The STATE column: a compromised value first, then what needs doing (capitals when
    it is due now), else the first other reason the due report gives, else the age."""
    if "compromised" in reasons:
        return REASON_LABELS["compromised"].upper()
    label = LABELS[state] or (REASON_LABELS.get(reasons[0], "") if reasons else "")
    return (label.upper() if state in DUE else label) or age(updated_ago)


def _reasons(meta: EntryMeta, reported: tuple[str, ...]) -> tuple[str, ...]:
    """The due report's reasons, with the mark the entry itself carries (an entry marked
    after the report is shown marked at once)."""
    if meta.compromised is None or "compromised" in reported:
        return reported
    return ("compromised", *reported)


def _haystack(meta: EntryMeta) -> str:
    return " ".join((meta.name, meta.service, *meta.tags)).lower()


def _fuzzy(query: str) -> Callable[[str], object]:
    """Subsequence match: 'gwt' finds 'github/work/token'.

    Each step skips to the next wanted character with a possessive class
    (`[^w]*+w`), so a miss costs one linear scan instead of backtracking.
    """
    return re.compile("".join(f"[^{re.escape(ch)}]*+{re.escape(ch)}" for ch in query)).match


class EntryList(Widget, can_focus=True):
    """Entries sorted by name; a cursor; substring-then-fuzzy filtering."""

    COMPONENT_CLASSES = {"entry-list--cursor", "entry-list--due", "entry-list--header"}
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    cursor = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor moved onto an entry (or onto nothing)."""

        def __init__(self, entry: EntryMeta | None) -> None:
            super().__init__()
            self.entry = entry

    class Selected(Message):
        """Enter or a click on an entry."""

        def __init__(self, entry: EntryMeta) -> None:
            super().__init__()
            self.entry = entry

    def __init__(self, *, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self._entries: list[EntryMeta] = []
        self._loaded = False                 # until the first set_entries: "Loading…", not "empty"
        self._widest = (0, 0, 0)             # longest name, service, kind: column widths
        self._names: list[str] = []
        self._hay: list[str] = []
        self._rows: list[int] = []          # indexes into _entries, in display order
        self._query = ""
        self._scope: Callable[[EntryMeta], bool] | None = None
        self._due_only = False
        self._reason: str | None = None      # only entries the due report lists for it
        self.periods: Periods = DEFAULT_ROTATION  # the agent's (Browse sets them)
        self._reasons: dict[str, tuple[str, ...]] = {}  # name → its reasons in the due report
        self._report = False
        # query → (rows in display order, the same sorted): backspace is a lookup,
        # and a longer query narrows the longest cached prefix's matches
        self._memo: dict[str, tuple[list[int], list[int]]] = {}
        self._line_cache: dict[tuple[int, int, bool], Strip] = {}
        self._top = 0                        # first row shown below the header
        self._styles: dict[str, Style] = {}

    # ------------------------------------------------------------ data

    @property
    def entries(self) -> list[EntryMeta]:
        return self._entries

    @property
    def due_only(self) -> bool:
        return self._due_only

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def has_report(self) -> bool:
        """Whether the agent's due report has arrived (marks and reasons are the agent's)."""
        return self._report

    def reason_counts(self) -> dict[str, int]:
        """How many entries the due report lists for each reason."""
        counts: dict[str, int] = {}
        for reasons in self._reasons.values():
            for reason in reasons:
                counts[reason] = counts.get(reason, 0) + 1
        return counts

    def set_report(self, periods: Periods, report: DueReport) -> None:
        """The agent's rotation periods and due report: marks, highlights, reason filter."""
        self.periods = periods
        self._reasons = {e.name: tuple(r.reason for r in e.reasons) for e in report.entries}
        self._report = True
        self._memo.clear()
        self._refilter(self.highlighted.name if self.highlighted else None, reindexed=False)

    @property
    def visible_count(self) -> int:
        return len(self._rows)

    @property
    def highlighted(self) -> EntryMeta | None:
        if 0 <= self.cursor < len(self._rows):
            return self._entries[self._rows[self.cursor]]
        return None

    def set_entries(self, entries: Iterable[EntryMeta]) -> None:
        keep = self.highlighted.name if self.highlighted else None
        self._loaded = True
        self._entries = sorted(entries, key=lambda m: m.name)
        self._names = [m.name for m in self._entries]
        self._hay = [_haystack(m) for m in self._entries]
        self._widest = (max(map(len, self._names), default=0),
                        max((len(m.service) for m in self._entries), default=0),
                        max((len(m.kind) for m in self._entries), default=0))
        self._refilter(keep)

    def upsert(self, meta: EntryMeta) -> None:
        keep = self.highlighted.name if self.highlighted else None
        name, service, kind = self._widest
        self._widest = (max(name, len(meta.name)), max(service, len(meta.service)),
                        max(kind, len(meta.kind)))  # never narrower: columns do not jump
        i = bisect.bisect_left(self._names, meta.name)
        if i < len(self._names) and self._names[i] == meta.name:
            self._entries[i], self._hay[i] = meta, _haystack(meta)
        else:
            self._entries.insert(i, meta)
            self._names.insert(i, meta.name)
            self._hay.insert(i, _haystack(meta))
        self._refilter(keep)

    def remove_entry(self, name: str) -> None:
        i = bisect.bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name:
            keep = self.highlighted.name if self.highlighted else None
            for seq in (self._entries, self._names, self._hay):
                del seq[i]
            self._refilter(keep if keep != name else None, at=self.cursor)

    def visible_entries(self) -> list[EntryMeta]:
        """The entries the filter lets through, in display order (not `visible`: a DOM property)."""
        return [self._entries[i] for i in self._rows]

    def move_to(self, name: str) -> bool:
        """Put the cursor on `name` if it is visible."""
        i = bisect.bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name and i in self._rows:
            self.cursor = self._rows.index(i)
            return True
        return False

    def get(self, name: str) -> EntryMeta | None:
        i = bisect.bisect_left(self._names, name)
        return self._entries[i] if i < len(self._names) and self._names[i] == name else None

    # ------------------------------------------------------------ filtering

    def filter(self, query: str | None = None, *,
               scope: Callable[[EntryMeta], bool] | bool | None = False,
               due_only: bool | None = None, reason: str | bool | None = False) -> None:
        """Change any of: the search text, the folder scope, the due-only switch, the
        reason (None: any entry)."""
        if query is not None:
            self._query = query.strip().lower()
        if scope is not False:
            self._scope = scope  # type: ignore[assignment]
            self._memo.clear()
        if due_only is not None and due_only != self._due_only:
            self._due_only = due_only
            self._memo.clear()
        if reason is not False and reason != self._reason:
            self._reason = reason  # type: ignore[assignment]
            self._memo.clear()
        self._refilter(None, reindexed=False)

    def _base(self) -> list[int]:
        rows = list(range(len(self._entries)))
        if self._scope is not None:
            scope = self._scope
            rows = [i for i in rows if scope(self._entries[i])]
        if self._due_only:
            now, periods = self.clock(), self.periods
            rows = [i for i in rows if entry_state(self._entries[i], now, periods) in DUE]
        if self._reason is not None:
            wanted, reasons = self._reason, self._reasons
            rows = [i for i in rows if wanted in reasons.get(self._names[i], ())]
        return rows

    def _match(self, query: str) -> list[int]:
        """Substring matches first, then fuzzy (subsequence) ones, each in name order."""
        if query in self._memo:
            return self._memo[query][0]
        prefix = next((query[:k] for k in range(len(query) - 1, 0, -1)
                       if query[:k] in self._memo), None)
        candidates = self._memo[prefix][1] if prefix is not None else self._base()
        hay = self._hay
        if len(query) < 2:  # one character: fuzzy and substring are the same
            found = rows = [i for i in candidates if query in hay[i]]
        else:
            match = _fuzzy(query)
            found = [i for i in candidates if match(hay[i])]  # sorted, as candidates are
            rows = [i for i in found if query in hay[i]]        # every substring match is fuzzy too
            if len(rows) != len(found):
                exact = set(rows)
                rows = rows + [i for i in found if i not in exact]
        if len(self._memo) > 64:
            self._memo.clear()
        self._memo[query] = (rows, found)
        return rows

    def _refilter(self, keep: str | None, at: int | None = None, *, reindexed: bool = True) -> None:
        if reindexed:
            self._memo.clear()  # row indexes moved
        rows = self._match(self._query) if self._query else self._base()
        self._rows = rows
        self._line_cache.clear()
        self._top = max(0, min(self._top, len(rows) - self._page))
        cursor = at if at is not None else 0
        if keep is not None:
            i = bisect.bisect_left(self._names, keep)
            if i < len(self._names) and self._names[i] == keep:
                try:
                    cursor = rows.index(i)
                except ValueError:
                    pass
        self.cursor = min(cursor, max(0, len(rows) - 1))
        self.refresh()

    # ------------------------------------------------------------ cursor

    @property
    def _page(self) -> int:
        """Rows that fit below the header."""
        return max(1, self.size.height - 1)

    def watch_cursor(self, old: int, new: int) -> None:
        self._line_cache.clear()
        if new < self._top:
            self._top = new
        elif new >= self._top + self._page:
            self._top = new - self._page + 1
        self.post_message(self.Highlighted(self.highlighted))
        self.refresh()

    def _scroll(self, delta: int) -> None:
        self._top = max(0, min(self._top + delta, len(self._rows) - self._page))
        self.refresh()

    def on_mouse_scroll_down(self, event: MouseScrollDown) -> None:
        event.stop()
        self._scroll(3)

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        event.stop()
        self._scroll(-3)

    def action_cursor(self, delta: int) -> None:
        if self._rows:
            self.cursor = max(0, min(len(self._rows) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        """Turn a page: the view and the cursor move together."""
        self._scroll(direction * self._page)
        self.action_cursor(direction * self._page)

    def action_jump(self, where: int) -> None:
        if self._rows:
            self.cursor = where % len(self._rows)

    def action_select(self) -> None:
        if self.highlighted is not None:
            self.post_message(self.Selected(self.highlighted))

    def on_click(self, event: Click) -> None:
        row = event.y - 1 + self._top
        if event.y >= 1 and 0 <= row < len(self._rows):
            self.cursor = row
            self.action_select()

    # ------------------------------------------------------------ rendering

    def _columns(self, width: int) -> tuple[int, int, int, int]:
        """Widths of name, service, type, state: whole where they fit, squeezed where not.

        Service and type get their longest value (capped); when that leaves the
        names too little, service gives way down to 8 columns, then type to 10.
        """
        widest_name, widest_service, widest_kind = self._widest
        state = 8
        service, kind = max(7, min(widest_service, 24)), max(4, min(widest_kind, 20))
        room = width - state - 4                       # four separating spaces
        short = kind + service + min(max(widest_name, 4), 30) - room
        if short > 0:
            cut = min(short, max(0, service - 8))
            service, short = service - cut, short - cut
            kind -= min(short, max(0, kind - 10))
        return max(8, room - service - kind), service, kind, state

    def _cells(self, values: tuple[str, str, str, str], width: int) -> str:
        widths = self._columns(width)
        cells = [(v[: w - 1] + "…") if len(v) > w else v.ljust(w) for v, w in zip(values, widths)]
        return (" " + " ".join(cells)).ljust(width)[:width]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:  # a header that stays put while the rows scroll
            style = self._style("entry-list--header")
            return Strip([Segment(self._cells(("NAME", "SERVICE", "TYPE", "STATE"), width), style)])
        if not self._rows:
            return self._empty_line(y - 1, width)
        row = y - 1 + self._top
        bar = self._scrollbar(y - 1)
        width -= len(bar)
        if row >= len(self._rows):
            return Strip([Segment(" " * width + bar, self._style(""))])
        on_cursor = row == self.cursor
        key = (row, width, on_cursor)
        strip = self._line_cache.get(key)
        if strip is None:
            strip = self._render_row(row, width, on_cursor)
            self._line_cache[key] = strip
        return Strip([*strip, Segment(bar, self._style(""))]) if bar else strip

    def empty_text(self) -> str:
        """What an empty list says instead, and how to fill it."""
        if not self._loaded:
            return "Loading…"
        if not self._entries:
            return "No entries yet. Press n to add the first one, or ? for help."
        if self._query:
            return f"Nothing matches “{self._query}”."
        if self._due_only:
            return "No entry is due for rotation or expired. Press u to show all entries."
        if self._reason is not None:
            return f"No entry is listed as {self._reason}. Press U to choose another reason."
        return "No entries under this folder."

    def _empty_line(self, y: int, width: int) -> Strip:
        """Row `y` of the empty list: the message, wrapped, one blank row below the header."""
        lines = textwrap.wrap(self.empty_text(), max(8, width - 2))
        text = lines[y - 1] if 1 <= y <= len(lines) else ""
        return Strip([Segment((" " + text).ljust(width)[:width], self._style(""))])

    def _scrollbar(self, y: int) -> str:
        """One column: the thumb where the visible rows sit, when they do not all fit."""
        total, page = len(self._rows), self._page
        if total <= page:
            return ""
        size = max(1, page * page // total)
        start = min(page - size, self._top * page // total)
        return "┃" if start <= y < start + size else "│"

    def _render_row(self, row: int, width: int, on_cursor: bool) -> Strip:
        meta = self._entries[self._rows[row]]
        now = self.clock()
        state = entry_state(meta, now, self.periods)
        reasons = _reasons(meta, self._reasons.get(meta.name, ()))
        text = self._cells((meta.name, meta.service, meta.kind,
                            _mark(state, reasons, now - meta.updated)), width)
        style = self._style("")
        if state in DUE or not _HIGHLIGHTED.isdisjoint(reasons):
            style += self._style("entry-list--due")
        if on_cursor:
            style += self._style("entry-list--cursor")
        return Strip([Segment(text, style)])

    def on_mount(self) -> None:
        self.set_interval(60, self.refresh_states)

    def refresh_states(self) -> None:
        """Ages and due/expired marks move with the clock: repaint the visible rows."""
        self._line_cache.clear()
        self.refresh()

    def on_resize(self) -> None:
        self._line_cache.clear()
        self._top = max(0, min(self._top, len(self._rows) - self._page))

    def _style(self, component: str) -> Style:
        """Styles are costly to resolve and change only with the theme: memoized."""
        style = self._styles.get(component)
        if style is None:
            style = self.get_component_rich_style(component) if component else self.rich_style
            self._styles[component] = style
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._line_cache.clear()
