"""The browse screen: search bar, (folder tree,) entry list, detail pane, status bar.

Workers talk to the agent and post the messages below; handlers only paint.
"""

from __future__ import annotations

from rich.repr import Result
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer

from credd.errors import BadRequest, CreddError, NotFound
from credd.protocol import DueReport, EntryMeta, Inspection, Revealed
from credtui.messages import EntryChanged
from credtui.screens.base import CredScreen, KeyFooter
from credtui.screens.confirm import confirm
from credtui.screens.edit import Draft, EditScreen
from credtui.widgets.entry_detail import EntryDetail
from credtui.widgets.entry_list import EntryList
from credtui.widgets.folder_tree import FolderTree
from credtui.widgets.search_bar import SearchBar
from credtui.widgets.status_bar import StatusBar

DETAIL_DELAY = 0.08  # seconds the cursor rests before the detail pane follows
DUE_DELAY = 2.0      # seconds after a change before the due report is asked for again


class _Secretive(Message):
    """A message carrying a Revealed; its repr is the protocol's redacted one."""

    def __init__(self, revealed: Revealed) -> None:
        super().__init__()
        self.revealed = revealed

    def __rich_repr__(self) -> Result:
        yield "name", self.revealed.entry.name


class BrowseScreen(CredScreen):
    """The main screen while unlocked."""

    # the list from the first frame: focusing it in on_mount left a moment in which
    # Textual's default (the first focusable, the search box) took the keys typed
    AUTO_FOCUS = "#entries"

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("r", "reveal", "Reveal"),
        Binding("c", "copy", "Copy"),
        Binding("C", "copy_field", "Copy field", show=False),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("h", "history", "History", show=False),  # the footer keeps to 80 columns;
        Binding("w", "who", "Who read it", show=False),  # help (?) lists every key
        Binding("t", "trash", "Trash", show=False),
        Binding("f", "folders", "Folders", show=False),
        Binding("u", "due", "Due", show=False),
        Binding("U", "due_reason", "Due, by reason", show=False),
    ]
    PALETTE = BINDINGS
    #: Actions on the highlighted entry: offered only while there is one.
    ON_ENTRY = frozenset({"reveal", "copy", "copy_field", "edit", "delete", "history"})

    class Loaded(Message):
        def __init__(self, entries: list[EntryMeta]) -> None:
            super().__init__()
            self.entries = entries

    class DueLoaded(Message):
        """The agent's rotation periods and due report."""

        def __init__(self, periods: dict[str, float], report: DueReport) -> None:
            super().__init__()
            self.periods, self.report = periods, report

    class Inspected(Message):
        def __init__(self, seen: Inspection) -> None:
            super().__init__()
            self.seen = seen

    class Revealed(_Secretive):
        """Values to show in the detail pane."""

    class EditReady(_Secretive):
        """Values to prefill the edit form with."""

    class Updated(Message):
        def __init__(self, meta: EntryMeta) -> None:
            super().__init__()
            self.meta = meta

    class Removed(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    class Failed(Message):
        def __init__(self, text: str, title: str = "Error") -> None:
            super().__init__()
            self.text, self.title = text, title

    _detail_timer: Timer | None = None
    _due_timer: Timer | None = None
    _had_entry = False

    def compose(self) -> ComposeResult:
        app = self.app
        yield SearchBar(id="search")
        with Horizontal(id="browse-main"):
            yield FolderTree(id="folders")
            yield EntryList(clock=app.clock, id="entries")
            yield EntryDetail(reveal_seconds=app.reveal_seconds, clock=app.clock, id="detail")
        yield StatusBar()
        yield KeyFooter()

    @property
    def entry_list(self) -> EntryList:
        return self.query_one(EntryList)

    @property
    def detail(self) -> EntryDetail:
        return self.query_one(EntryDetail)

    def on_mount(self) -> None:
        self.query_one(FolderTree).display = False
        self.load()

    # ------------------------------------------------------------ workers

    @work(exclusive=True, group="load")
    async def load(self) -> None:
        try:
            self.post_message(self.Loaded(await self.app.client.list()))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Could not list entries"))
            return
        self.load_due()

    @work(exclusive=True, group="due")
    async def load_due(self) -> None:
        """The due report, after the list: with many entries reading every value takes
        seconds, and the list is useful meanwhile."""
        client = self.app.client
        try:
            periods = (await client.policy()).rotation
            self.post_message(self.DueLoaded(periods, await client.due()))
        except BadRequest:
            pass  # an agent without the lifecycle requests: marks from the default rules
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Could not check what is due"))

    @work(exclusive=True, group="inspect")
    async def inspect(self, name: str) -> None:
        try:
            self.post_message(self.Inspected(await self.app.client.inspect(name)))
        except CreddError:
            pass  # the pane keeps what the list knows

    @work(exclusive=True, group="reveal")
    async def reveal(self, name: str) -> None:
        try:
            self.post_message(self.Revealed(await self.app.client.reveal(name)))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Could not reveal"))
        self.app.refresh_status()

    @work(exclusive=True, group="copy")
    async def copy(self, name: str, field: str | None) -> None:
        try:
            value = await self.app.client.get(name, field or None)
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Could not copy"))
            return
        self.app.copy_secret(value, f"{name} {field}" if field else name)  # not painting: here
        self.app.refresh_status()

    @work(exclusive=True, group="write")
    async def prepare_edit(self, name: str) -> None:
        try:
            self.post_message(self.EditReady(await self.app.client.reveal(name)))
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Could not edit"))

    @work(exclusive=True, group="write")
    async def save(self, draft: Draft, mode: str) -> None:
        try:
            if draft.renamed_from:  # first, so the history moves with the entry
                await self.app.client.move(draft.renamed_from, draft.name)
                self.post_message(self.Removed(draft.renamed_from))
            meta = await self.app.client.set(draft.name, mode=mode, **draft.to_set())
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Not saved"))
            return
        self.post_message(self.Updated(meta))
        self.notify(f"Saved {meta.name}")

    @work(exclusive=True, group="write")
    async def delete(self, name: str) -> None:
        try:
            await self.app.client.delete(name)
        except CreddError as exc:
            self.post_message(self.Failed(exc.message, "Not deleted"))
            return
        self.post_message(self.Removed(name))
        self.notify(f"Moved {name} to the trash (t to see it)")

    @work(group="changes")
    async def follow_change(self, change: EntryChanged) -> None:
        """Another client (or we) changed an entry: fetch just that one (and, once changes
        settle, the due report)."""
        self._due_later()
        if change.action in ("delete", "purge", "move"):
            self.post_message(self.Removed(change.name))
        name = change.new_name if change.action == "move" else change.name
        if change.action in ("delete", "purge") or not name:
            return
        try:
            self.post_message(self.Updated(await self.app.client.describe(name)))
        except NotFound:
            self.post_message(self.Removed(name))
        except CreddError:
            pass

    # ------------------------------------------------------------ handlers (paint)

    def on_browse_screen_loaded(self, message: Loaded) -> None:
        self.entry_list.set_entries(message.entries)
        self._paint_counts()

    def on_browse_screen_due_loaded(self, message: DueLoaded) -> None:
        self.entry_list.set_report(message.periods, message.report)
        self.detail.set_periods(message.periods)
        self._paint_counts()

    def on_browse_screen_inspected(self, message: Inspected) -> None:
        self.detail.show_inspection(message.seen)

    def _due_later(self) -> None:
        if self._due_timer is not None:
            self._due_timer.stop()
        self._due_timer = self.set_timer(DUE_DELAY, self.load_due)

    def on_browse_screen_revealed(self, message: Revealed) -> None:
        self.detail.reveal(message.revealed)

    def on_browse_screen_edit_ready(self, message: EditReady) -> None:
        self._open_form(Draft.from_revealed(message.revealed), "update")

    def on_browse_screen_updated(self, message: Updated) -> None:
        self.entry_list.upsert(message.meta)
        if self.detail.meta is not None and self.detail.meta.name == message.meta.name \
                and self.detail.meta.version != message.meta.version:
            self._show(message.meta)  # changed: hides any revealed value
        self._paint_counts()

    def on_browse_screen_removed(self, message: Removed) -> None:
        self.entry_list.remove_entry(message.name)
        self._paint_counts()

    def on_browse_screen_failed(self, message: Failed) -> None:
        self.notify(message.text, title=message.title, severity="error")

    def on_entry_changed(self, message: EntryChanged) -> None:
        self.follow_change(message)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the entry actions (footer and keys) while no entry is highlighted."""
        if action in self.ON_ENTRY:
            lists = self.query(EntryList)
            return bool(lists) and lists.first().highlighted is not None
        return True

    @on(EntryList.Highlighted)
    def highlighted(self, message: EntryList.Highlighted) -> None:
        """Repaint the detail pane once the cursor rests: typing a query stays cheap."""
        if self._had_entry != (message.entry is not None):
            self._had_entry = message.entry is not None
            self.refresh_bindings()  # only on a change: it rebuilds the footer
        if self._detail_timer is not None:
            self._detail_timer.stop()
        if message.entry is None or self.detail.meta is None:
            self._show(message.entry)  # nothing to show, or first entry: at once
        elif message.entry is not self.detail.meta:
            entry = message.entry
            self._detail_timer = self.set_timer(DETAIL_DELAY, lambda: self._show(entry))

    def _show(self, entry: EntryMeta | None) -> None:
        """The detail pane on `entry`, and what the agent knows of it once it answers."""
        self.detail.show_entry(entry)
        if entry is not None:
            self.inspect(entry.name)

    @on(EntryList.Selected)
    def selected(self, message: EntryList.Selected) -> None:
        self._show(message.entry)

    @on(SearchBar.Changed, "#search")
    def search_changed(self, message: SearchBar.Changed) -> None:
        self.entry_list.filter(message.value)
        self._paint_counts()

    @on(SearchBar.Submitted, "#search")
    def search_submitted(self) -> None:
        self.entry_list.cursor = 0
        self.entry_list.focus()

    @on(SearchBar.Cleared)
    def search_cleared(self) -> None:
        self.entry_list.focus()

    @on(FolderTree.ScopeChanged)
    def scope_changed(self, message: FolderTree.ScopeChanged) -> None:
        self.entry_list.filter(scope=message.scope)
        self._paint_counts()

    def _paint_counts(self) -> None:
        bar = self.query_one(StatusBar)
        bar.entries = len(self.entry_list.entries)
        bar.shown = self.entry_list.visible_count

    def forget_secrets(self) -> None:
        """Called before this screen goes away (lock, agent gone)."""
        if self.is_mounted:
            self.detail.secret.hide()

    # ------------------------------------------------------------ actions

    def _current(self) -> EntryMeta | None:
        """The highlighted entry, with the detail pane caught up to it."""
        meta = self.entry_list.highlighted
        if meta is not self.detail.meta:
            if self._detail_timer is not None:
                self._detail_timer.stop()
            self._show(meta)
        if meta is None:
            self.notify("No entry selected", severity="warning")
        return meta

    def action_search(self) -> None:
        self.query_one(SearchBar).focus()

    def action_reveal(self) -> None:
        if self.detail.secret.revealed and self.entry_list.highlighted is self.detail.meta:
            self.detail.secret.hide()
        elif (meta := self._current()) is not None:
            self.reveal(meta.name)

    def action_copy(self) -> None:
        if (meta := self._current()) is not None:
            self.copy(meta.name, None)

    def action_copy_field(self) -> None:
        from credtui.screens.pick_field import PickFieldScreen
        if (meta := self._current()) is not None:
            name = meta.name

            def chosen(field: str | None) -> None:
                if field is not None:
                    self.copy(name, field)
            self.app.push_screen(PickFieldScreen(meta), chosen)

    def action_new(self) -> None:
        self._open_form(None, "create")

    def _open_form(self, draft: Draft | None, mode: str) -> None:
        """The edit form; what it returns is saved with `mode` ("create" or "update")."""
        def done(result: Draft | None) -> None:
            if result is not None:
                self.save(result, mode)
        self.app.push_screen(EditScreen(draft), done)

    def action_edit(self) -> None:
        if (meta := self._current()) is not None:
            self.prepare_edit(meta.name)

    def action_delete(self) -> None:
        if (meta := self._current()) is not None:
            name = meta.name
            confirm(self.app, f"Move {name} to the trash?", "Delete", lambda: self.delete(name))

    def action_history(self) -> None:
        from credtui.screens.history import HistoryScreen
        if (meta := self._current()) is not None:
            self.app.push_screen(HistoryScreen(meta.name))

    def action_who(self) -> None:
        from credtui.screens.audit import WhoReadScreen
        if (meta := self._current()) is not None:
            self.app.push_screen(WhoReadScreen(meta.name))

    def action_trash(self) -> None:
        from credtui.screens.trash import TrashScreen
        self.app.push_screen(TrashScreen())

    def action_folders(self) -> None:
        """Cycle the tree: hidden → by folder → by service → hidden."""
        tree = self.query_one(FolderTree)
        if not tree.display:
            tree.fill(self.entry_list.entries, "folders")
            tree.display = True
        elif tree.mode == "folders":
            tree.fill(self.entry_list.entries, "services")
        else:
            tree.display = False
        self.entry_list.filter(scope=None)
        self._paint_counts()

    def action_due(self) -> None:
        due = not self.entry_list.due_only
        self.entry_list.filter(due_only=due, reason=None)
        self.notify("Showing only entries due for rotation or expired" if due
                    else "Showing all entries")
        self._paint_counts()

    def action_due_reason(self) -> None:
        """Pick a reason of the due report: only the entries it lists for that reason."""
        from credtui.screens.pick_reason import PickReasonScreen
        entries = self.entry_list

        def chosen(reason: str | None) -> None:
            if reason is None:
                return
            entries.filter(due_only=False, reason=reason or None)
            self.notify(f"Showing only entries listed as {reason}" if reason
                        else "Showing all entries")
            self._paint_counts()
        self.app.push_screen(PickReasonScreen(entries.reason_counts(), entries.reason), chosen)
