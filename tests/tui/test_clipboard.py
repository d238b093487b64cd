"""credtui.clipboard: OSC 52 bytes, timed clearing, and leaving a changed clipboard alone."""

from __future__ import annotations

import base64

from credtui.clipboard import CLEAR, Clipboard, osc52


class Scheduler:
    """Collects scheduled callbacks so a test decides when time passes."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, object]] = []

    def __call__(self, delay, callback):
        self.pending.append((delay, callback))

    def run_all(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback in pending:
            callback()


def test_osc52_is_base64_of_utf8():
    seq = osc52("pässword")
    assert seq.startswith("\x1b]52;c;") and seq.endswith("\a")
    assert base64.b64decode(seq[7:-1]).decode() == "pässword"


def test_copy_then_clear_after_the_delay():
    out, later = [], Scheduler()
    clip = Clipboard(out.append, later, clear_after=45, reader=False)
    clip.copy("s3cret")
    assert out == [osc52("s3cret")] and later.pending[0][0] == 45 and clip.pending
    later.run_all()
    assert out[-1] == CLEAR and not clip.pending


def test_newer_copy_cancels_the_older_clear():
    out, later = [], Scheduler()
    clip = Clipboard(out.append, later, reader=False)
    clip.copy("one")
    clip.copy("two")
    later.run_all()
    assert out == [osc52("one"), osc52("two"), CLEAR]


def test_clipboard_changed_elsewhere_is_left_alone():
    out, later = [], Scheduler()
    clip = Clipboard(out.append, later, reader=["printf", "something else"])
    clip.copy("s3cret")
    later.run_all()
    assert out == [osc52("s3cret")]


def test_clipboard_still_ours_is_cleared():
    out, later = [], Scheduler()
    clip = Clipboard(out.append, later, reader=["printf", "s3cret"])
    clip.copy("s3cret")
    later.run_all()
    assert out == [osc52("s3cret"), CLEAR]
