"""Reading a captured terminal screen back as text a person would read.

`flows(screen)` cuts every line at the vertical lines of boxes, panes and
input fields, and joins the pieces that sit in the same columns on
consecutive lines: a sentence wrapped inside a dialog, or inside the list
pane, reads as one string again. `missing(screen, texts)` names the texts that
do not appear whole in any flow or line: clipped ("…to unlock the vau"),
cut off by the edge, or replaced by an ellipsis. Both the Pilot tests (the
compositor's text) and the tmux tests (`capture-pane -p`) use it, so the same
expectations hold in a real terminal.
"""

from __future__ import annotations

import re

# box sides, pane rules, tall input and toast borders, the footer's palette rule
_WALLS = re.compile(r"[│┃╭╮╰╯▊▎▏▌▐]")
# horizontal rules, input tops and bottoms, scrollbar blocks: blank for reading
_FILL = str.maketrans(dict.fromkeys("─━▔▁▂▃▄▅▆▇█", " "))


def _normal(text: str) -> str:
    return " ".join(text.split())


def _pieces(line: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of each stretch between walls; the last one ends at -1, the
    line's end wherever that is (capture-pane trims trailing spaces)."""
    pieces, start = [], 0
    for wall in _WALLS.finditer(line):
        pieces.append((start, wall.start(), line[start:wall.start()]))
        start = wall.end()
    pieces.append((start, -1, line[start:]))
    return pieces


def flows(screen: str) -> list[str]:
    """Every run of same-column pieces on consecutive lines, joined and normalized."""
    open_runs: dict[tuple[int, int], list[str]] = {}
    done: list[str] = []
    for line in screen.translate(_FILL).splitlines():
        spans = {(a, b): text for a, b, text in _pieces(line)}
        for span in [s for s in open_runs if s not in spans]:
            done.append(_normal(" ".join(open_runs.pop(span))))
        for span, text in spans.items():
            open_runs.setdefault(span, []).append(text)
    done += [_normal(" ".join(run)) for run in open_runs.values()]
    return [flow for flow in done if flow]


def missing(screen: str, texts: list[str]) -> list[str]:
    """The texts that do not appear whole on `screen` (wrapping at spaces is fine)."""
    readable = flows(screen) + [_normal(line) for line in screen.translate(_FILL).splitlines()]
    return [text for text in texts if not any(_normal(text) in flow for flow in readable)]


def assert_whole(screen: str, texts: list[str], where: str = "") -> None:
    """Fail naming every text that is clipped, cut or elided; no ellipsis anywhere."""
    lost = missing(screen, texts)
    assert not lost, f"{where}: not shown whole: {lost}\n{screen}"
    assert "…" not in screen, f"{where}: an ellipsis where the text fits:\n{screen}"
