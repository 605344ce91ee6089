"""Drivers: each store's async driver beside its blocking twin, hand-written (``_async/`` gets them
through one function per store, which ``scripts/run_unasync.py`` maps to the sync twin's), and
the store's statements, kept in files next to them."""

from __future__ import annotations

import re
from importlib.resources import files

_MARKER = re.compile(r"^-- name: (\w+)[ \t]*$", re.MULTILINE)


def statements(resource: str) -> dict[str, str]:
    """The named statements of ``resource``, a file of this package (see ``parse``)."""
    return parse(files(__name__).joinpath(resource).read_text(encoding="utf-8"), resource)


def parse(text: str, source: str) -> dict[str, str]:
    """The statements of ``text`` by name.

    Each statement follows a ``-- name: <name>`` line and runs to the next one; text before the
    first marker and lines starting with ``--`` are comments. A statement's lines are joined by
    single spaces, so the text sent to the server is one line.

    :raises ValueError: a name appears twice, or a statement is empty; ``source`` names the file.
    """
    parts = _MARKER.split(text)[1:]  # [name, body, name, body, ...]
    found: dict[str, str] = {}
    for name, body in zip(parts[::2], parts[1::2], strict=True):
        lines = (line.strip() for line in body.splitlines())
        statement = " ".join(line for line in lines if line and not line.startswith("--"))
        if name in found or not statement:
            raise ValueError(f"{source}: statement {name!r} is {'repeated' if name in found else 'empty'}")
        found[name] = statement
    return found
