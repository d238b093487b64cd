"""Base classes of credtui's screens: they know their app's type, and own a footer.

`self.app` is typed as `CredApp` for mypy only (the annotation lives under
TYPE_CHECKING, so importing a screen never imports the app): `self.app.client`,
`.clip` and `.clock` are checked like any other attribute.

Every screen composes its own footer, so the keys shown are always those of
the screen on top: a modal's footer covers the one of the screen below it,
whose keys do not work while the modal is open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from textual.events import Resize
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

if TYPE_CHECKING:
    from credtui.app import CredApp

R = TypeVar("R")

#: Below this many columns the footer leaves out the command palette's key
#: (help lists it), so every key of the busiest screen (Browse) fits in 80.
WIDE_FOOTER = 100


class KeyFooter(Footer):
    """Textual's footer, without the palette's key in narrow terminals."""

    def on_resize(self, event: Resize) -> None:
        self.show_command_palette = event.size.width >= WIDE_FOOTER


class Forgets:
    """The app calls `forget_secrets()` on every screen before it replaces them (lock, agent
    gone)."""

    def forget_secrets(self) -> None:
        """Drop whatever secret this screen holds; most hold none."""


class CredScreen(Forgets, Screen[None]):
    """A top-level screen (no agent, create, unlock, browse)."""

    if TYPE_CHECKING:
        app: CredApp


class CredModal(Forgets, ModalScreen[R]):
    """A modal that returns an `R` when dismissed."""

    if TYPE_CHECKING:
        app: CredApp
