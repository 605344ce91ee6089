"""The file an SQLite connection has open: opening it, watching that its path still leads to it,
and opening it afresh in a forked child."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from .._errors import BackendError, reason

if TYPE_CHECKING:
    from .sqlite import Rows

logger = logging.getLogger("pyrate_limiter")

CHECK_EVERY = 32
"""A watched driver checks its file every this many runs, and at every leak and failure. An
``os.stat`` costs about a tenth of a decision (2.5 of 21 us): checking each one would show, one
in 32 costs under 0.5 %, below the benchmark's noise."""

OPENING = threading.Lock()
"""Held around opening a connection, and by a fork (see ``sqlite._hold_every_lock``)."""


def open_file(path: str, timeout: float = 5.0) -> sqlite3.Connection:
    """A sqlite3 connection to ``path`` for a bucket or clock that closes it, waiting ``timeout`` s for locks.

    :raises BackendError: the file cannot be opened.
    """
    # check_same_thread=False: the sync twin leaks from a background thread, the async one runs
    # in worker threads; the driver's lock keeps its transactions apart. isolation_level=None:
    # transactions are ours (BEGIN IMMEDIATE), never the driver's implicit deferred ones.
    try:
        with OPENING:  # never while a fork is copying SQLite's state: see sqlite.py's _hold_every_lock
            return sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as error:
        raise BackendError(f"the SQLite backend could not open {path!r}: {reason(error)}", recorded=False) from error


def open_watched(path: str, timeout: float) -> tuple[sqlite3.Connection, tuple[str, tuple[int, int]] | None]:
    """``open_file``, and the file it opened (its absolute path and identity) for ``FileWatch.follow``.

    ``None`` for an in-memory or temporary database, which has no file.

    :raises BackendError: the file cannot be opened, or was deleted or replaced as it was opened.
    """
    if path in ("", ":memory:"):
        return open_file(path, timeout), None
    # The path as given, made absolute (not SQLite's name for it, which resolves symbolic
    # links): a link turned to another file is a replaced file too.
    full = os.path.abspath(path)
    before = _identity(full)
    conn = open_file(path, timeout)
    after = _identity(full)
    if _UNKNOWN in (before, after):
        return conn, None
    if after is None or before not in (None, after):
        conn.close()
        raise BackendError(
            f"the SQLite database file {full!r} was deleted or replaced as it was being opened", recorded=False
        )
    return conn, (full, after)


def reopen_in_child(path: str, timeout: float, identity: tuple[int, int] | None) -> tuple[sqlite3.Connection, Any]:
    """For a forked child: a fresh connection to the file its bucket had open, ``open_watched``'s pair.

    Call it holding ``FORKED``, and put the inherited connection in ``INHERITED``.

    :raises BackendError: the path now leads to another file than ``identity`` (or to none).
    """
    conn, opened = open_watched(path, timeout)
    if opened is None or opened[1] != identity:
        conn.close()
        raise BackendError(
            f"the SQLite database file {path!r} was deleted or replaced since the parent process "
            "opened it: this forked process would not share its limit, so it refuses to use it",
            recorded=False,
        )
    return conn, opened


INHERITED: list[Any] = []
"""Connections a forked child inherited: never used again (SQLite forbids carrying a connection
across fork), never closed (that could disturb the parent, and drop the locks of the child's
fresh connection to the same file), kept so that their ids stay taken."""

FORKED = threading.Lock()
"""Held while a forked child replaces an inherited connection, so that its threads do it once."""


class Forks:
    """How many forks this process descends from: a bucket made at a lower count runs in a forked child.

    Compared at every run, where ``os.getpid()`` (a system call) would cost ten times more.
    """

    count = 0


class FileWatch:
    """Whether the path of the file a connection has open still leads to that file.

    Compares the path's identity (``st_dev``, ``st_ino``) with the one taken when the file was
    opened. Inactive until ``follow`` names the file: an in-memory database has none.
    """

    def __init__(self, owner: str) -> None:
        self.path: str | None = None
        self.identity: tuple[int, int] | None = None
        self._owner = owner
        self._left = CHECK_EVERY
        self._moved: str | None = None  # what happened to the file, once seen

    def follow(self, path: str, identity: tuple[int, int]) -> None:
        """Watch the file at ``path``, whose identity was ``identity`` when it was opened."""
        self.path, self.identity = path, identity

    def learn(self, rows: Rows) -> None:
        """Watch the main database of a connection, from its ``PRAGMA database_list`` rows.

        Its identity is taken now: the bucket did not open it. A name with no file behind it
        (an in-memory VFS) is not watched.
        """
        path = next((str(row[2]) for row in rows if row[1] == "main"), "")
        identity = _identity(path) if path else None
        if identity not in (None, _UNKNOWN):
            self.follow(path, identity)

    def due(self, now: bool) -> bool:
        """Count a run; whether to check the file before it: every ``CHECK_EVERY`` runs, or ``now``."""
        if self.path is None:
            return False
        self._left -= 1
        return now or self._left <= 0 or self._moved is not None

    def check(self) -> None:
        """:raises BackendError: the file was deleted or replaced (see ``moved``)."""
        error = self.moved()
        if error is not None:
            raise error

    def moved(self) -> BackendError | None:
        """The error to raise if the path no longer leads to the open file, else ``None``.

        Once the file is gone it stays gone: every later call returns the error. The first one
        logs it as a WARNING.
        """
        self._left = CHECK_EVERY
        if self._moved is None:
            if self.path is None:
                return None
            now = _identity(self.path)
            if now in (self.identity, _UNKNOWN):
                return None
            self._moved = (
                f"the SQLite database file {self.path!r} of {self._owner} was "
                f"{'deleted' if now is None else 'replaced by another file'} while in use: processes "
                "that open the path no longer see what it records, so it stops rather than split the "
                "limit. Close it (and its connection) and open the path again: the limits then start "
                "from what the file there holds"
            )
            logger.warning("%s", self._moved)
        return BackendError(self._moved, recorded=False)


_UNKNOWN = (-1, -1)


def _identity(path: str) -> tuple[int, int] | None:
    """The identity of the file at ``path``: ``None`` if there is none, ``_UNKNOWN`` if it cannot be looked at."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # no permission to look, say: no verdict on the file
        return _UNKNOWN
    return stat.st_dev, stat.st_ino
