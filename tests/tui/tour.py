"""One walk through every screen of credtui, for two drivers: Pilot and a real tmux.

It begins with no agent, starts one, creates the vault, adds an entry through
the form and opens each modal in turn; every stop names the texts that must
then be on screen whole (see `tests/tui/layout.py`). A new screen gets a stop
here, and both the Pilot and the tmux layout tests walk to it at 80×24 and
200×60.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.conftest import TEST_PASSPHRASE

SIZES = [(80, 24), (200, 60)]
NAME = "demo/api"
VALUE = "tour-value-1"


@dataclass(frozen=True)
class Key:
    """A key, by Textual's name ("escape", "ctrl+l", "question_mark", "n")."""
    name: str


@dataclass(frozen=True)
class Text:
    """Typed as is."""
    text: str


@dataclass(frozen=True)
class Secret:
    """Typed without ever being a command-line argument (tmux: a paste buffer fed on stdin)."""
    text: str


@dataclass(frozen=True)
class StartAgent:
    """The test starts the agent, as another terminal would."""


@dataclass(frozen=True)
class Back:
    """Escape out of a modal, then wait for Browse's footer: a key that follows an
    Escape too closely reaches the terminal as one alt+key."""

    shows: str = "r Reveal"


Step = Key | Text | Secret | StartAgent | Back


@dataclass(frozen=True)
class Stop:
    name: str
    steps: tuple[Step, ...]
    texts: tuple[str, ...]  # "{socket}" is the agent's socket path


BROWSE_KEYS = ("/ Search", "n New", "? Help", "^q Quit", "^l Lock")
ENTRY_KEYS = ("r Reveal", "c Copy", "e Edit", "d Delete")

TOUR = [
    Stop("no agent", (), (
        "No credd agent is running", "Nothing answers on {socket}.",
        'Start one here, or run `eval "$(credd agent)"` in a shell.',
        "Start an agent", "Retry", "Quit", "s Start agent", "r Retry", "^q Quit", "no agent")),
    Stop("create vault", (StartAgent(), Key("r")), (
        "Create your credd vault", "Choose a passphrase (at least 8 characters).",
        "passphrase", "passphrase again", "Create vault", "no vault", "^q Quit")),
    Stop("recovery key", (Secret(TEST_PASSPHRASE), Key("enter"), Secret(TEST_PASSPHRASE),
                          Key("enter")), (
        "Vault created. This recovery key unlocks it if you forget the passphrase. "
        "It is shown only now: store it somewhere safe.", "Copy", "I saved it")),
    Stop("empty vault", (Key("enter"),), (
        "No entries yet. Press n to add the first one, or ? for help.",
        "NAME", "SERVICE", "TYPE", "STATE", "No entry selected", "● unlocked", "0 entries",
        *BROWSE_KEYS)),
    Stop("new entry", (Key("n"),), (
        "New entry", "Name", "e.g. github/work/token", "Type", "any other secret value", "Save",
        "Cancel",
        "^s Save", "esc Cancel", "^g Generate", "^r Show value")),
    Stop("filled form", (Text(NAME), Key("tab"), Key("tab"), Key("tab"), Key("tab"), Text(VALUE)),
         ("•" * len(VALUE),)),  # at 80×24 the name has scrolled out of view
    Stop("browse", (Key("ctrl+s"),), (
        NAME, "secret", "today", "type", "updated", "r reveal · c copy", "1 entry",
        *BROWSE_KEYS, *ENTRY_KEYS)),
    Stop("edit entry", (Key("e"),), (f"Edit {NAME}", "Value", "Show", "Generate", "Save",
                                     "Cancel", "^s Save", "esc Cancel")),
    Stop("history", (Back(), Key("h")), (
        f"History of {NAME}", "v1 current", "No earlier versions", "esc Close", "r Restore")),
    Stop("trash", (Back(), Key("t")), (
        "Trash", "The trash is empty", "esc Close", "u Restore", "p Purge")),
    Stop("help", (Back(), Key("question_mark")), (
        "credtui keys", "Browse", "search name, service and tags (substring, then fuzzy)",
        "reveal or hide the secret values (hidden again after 30 s)", "esc Close")),
    Stop("confirm", (Back(), Key("d")), (
        f"Move {NAME} to the trash?", "Delete", "Cancel", "y Yes", "n No")),
    Stop("pick field", (Back(), Key("C")), (
        f"Copy which field of {NAME}?", "value", "esc Cancel")),
    Stop("pick reason", (Back(), Key("U")), (
        "Show only the entries that are:", "due for rotation  (0)", "not used for a long time  (0)",
        "esc Cancel")),
    Stop("unlock", (Back(), Key("ctrl+l")), (
        "credd is locked", "Locked on request. Enter your passphrase to unlock the vault.",
        "passphrase", "○ locked", "^q Quit")),
]
