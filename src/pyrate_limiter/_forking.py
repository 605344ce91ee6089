"""Locks a fork must not copy while another thread holds them.

fork() copies a lock held by another thread as held forever, and whatever it guards half
changed: the child would hang, or decide from a broken log. Each registered owner's lock is
taken just before a fork (it is held only for a decision, never across I/O or a wait) and
released after it, in the parent and in the child alike. (SQLite's connections need more, in
an order of their own: ``_drivers/sqlite.py`` holds them.)
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()
_FORKING: list[Any] = []


def hold_at_fork(owner: Any) -> None:
    """Take ``owner._lock`` (a ``threading.Lock`` never held across I/O or a wait) around every fork."""
    _OWNERS.add(owner)


def _hold_every_lock() -> None:
    _FORKING[:] = list(_OWNERS)
    for owner in _FORKING:
        owner._lock.acquire()


def _release_every_lock() -> None:
    for owner in _FORKING:
        owner._lock.release()
    _FORKING.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_hold_every_lock, after_in_parent=_release_every_lock, after_in_child=_release_every_lock
    )
