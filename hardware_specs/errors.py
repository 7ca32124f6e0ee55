"""The exception tree shared by every layer: unknown names (with close matches) and bad user input."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RoofsimError(Exception):
    """Base of every error roofsim raises on purpose for bad user input."""


class UnknownNameError(RoofsimError, KeyError):
    """An id/alias that is not in a catalog; the message lists the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known_list = sorted(set(known))
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in known_list], n=5, cutoff=0.4)
        hint = f"; closest: {', '.join(close)}" if close else ""
        shown = ", ".join(known_list[:40]) + (" ..." if len(known_list) > 40 else "")
        self.kind, self.name, self.known, self.close = kind, name, known_list, close
        super().__init__(f"unknown {kind} {name!r}{hint}. Known {kind}s: {shown}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class InputError(RoofsimError, ValueError):
    """Malformed user input (file, row, field): the message names where and which constraint."""
