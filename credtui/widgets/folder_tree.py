"""Folders by '/' segments of names, or by service; choosing one scopes the list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.message import Message
from textual.widgets import Tree

from credd.protocol import EntryMeta

Scope = Callable[[EntryMeta], bool] | None


def _folders(names: Iterable[str]) -> list[str]:
    """Every folder path that holds an entry, e.g. 'a/b/c' gives 'a' and 'a/b'."""
    found: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            found.add("/".join(parts[:depth]))
    return sorted(found)


class FolderTree(Tree[str]):
    """`mode` is "folders" or "services"; posts `ScopeChanged` with a predicate."""

    class ScopeChanged(Message):
        def __init__(self, scope: Scope, label: str) -> None:
            super().__init__()
            self.scope = scope
            self.label = label

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("all", data="", **kwargs)
        self.mode = "folders"
        self.show_root = True

    def fill(self, entries: list[EntryMeta], mode: str) -> None:
        self.mode = mode
        self.clear()
        self.root.label = "all entries" if mode == "folders" else "all services"
        if mode == "folders":
            nodes = {"": self.root}
            for folder in _folders(m.name for m in entries):
                parent, _, leaf = folder.rpartition("/")
                nodes[folder] = nodes[parent].add(leaf, data=folder)
        else:
            for service in sorted({m.service for m in entries}):
                self.root.add_leaf(service or "(none)", data=service)
        self.root.expand()

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()
        value = event.node.data or ""
        if event.node is self.root:
            self.post_message(self.ScopeChanged(None, ""))
        elif self.mode == "folders":
            prefix = value + "/"
            self.post_message(self.ScopeChanged(lambda m: m.name.startswith(prefix), prefix))
        else:
            self.post_message(self.ScopeChanged(lambda m: m.service == value, value or "(none)"))
