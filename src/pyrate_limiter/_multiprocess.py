"""``MultiprocessBucket``: one limit shared by the processes of one program, with no server.

It is an ``SQLiteBucket`` over a private file in a fresh temporary directory: every decision is
one ``BEGIN IMMEDIATE`` transaction, so SQLite's file lock makes it atomic across processes, and
the bucket travels to worker processes (pickled, or inherited by ``fork``) as the file's path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._errors import BackendError
from ._sync.buckets.sqlite import SQLiteBucket

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._rate import Rate

_TABLE = "bucket"

# Connections a forked child inherited: never used again (SQLite forbids carrying a connection
# across fork), never closed (that could disturb the parent), kept so their ids stay taken.
_INHERITED: list[Any] = []


class MultiprocessBucket(SQLiteBucket):
    """A bucket that worker processes share: ``MultiprocessBucket.init(rates)``, then pass it on.

    Pass it to ``ProcessPoolExecutor(initializer=..., initargs=(bucket,))``, to
    ``multiprocessing.Process(args=...)``, or let ``fork`` inherit it: each process opens the
    file itself on first use. Decisions are exact across processes and need no lock from the
    caller. Timestamps come from each process's limiter clock, so use a clock every process
    agrees on (``TimeClock``, the default; ``MonotonicClock`` is system-wide on Linux and macOS).

    The process that called ``init`` owns the file: it is removed when that bucket is closed,
    garbage-collected or the process exits, so keep it alive while the workers run. A worker
    whose file was removed or replaced raises ``BackendError`` (as ``SQLiteBucket`` does), and
    one that would open another file than its owner's refuses to: the limit is never split.
    """

    path: str
    """The database file the processes share."""
    _pid: int
    _reopen_lock: threading.Lock
    _finalizer: weakref.finalize[Any, Any] | None

    @classmethod
    def init(cls, rates: list[Rate]) -> Self:
        """Make a bucket over a new private file, owned by this process."""
        folder = tempfile.mkdtemp(prefix="pyrate_limiter-mp-")
        try:
            bucket = cls._open(rates, os.path.join(folder, "bucket.sqlite"))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        bucket._finalizer = weakref.finalize(bucket, _remove, folder, os.getpid())
        return bucket

    @classmethod
    def _open(cls, rates: list[Rate], path: str) -> Self:
        # synchronous=OFF: the file lives as long as the program; surviving a power loss is moot.
        bucket = cls.init_from_file(rates, _TABLE, path, synchronous="OFF")
        bucket.path = path
        bucket._pid = os.getpid()
        bucket._reopen_lock = threading.Lock()
        bucket._finalizer = None
        return bucket

    @property
    def mp_lock(self) -> NoLock:
        """v3 code sets ``limiter.lock = bucket.mp_lock``: nothing to lock here, so a no-op lock."""
        return NoLock()

    def limiter_lock(self) -> object | None:
        """v3's hook for an extra lock around the limiter: none is needed."""
        return None

    def close(self) -> None:
        """Close this process's connection; in the owning process, also remove the file."""
        if self._pid != os.getpid():  # forked, never used here: the connection is the parent's
            _INHERITED.append(self.conn)
            self._owns_conn = False
            return
        super().close()
        if self._finalizer is not None:
            self._finalizer()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), self.rates, self.path, self._db.file.identity))

    def _run(self, steps: Any, *, write: bool, check: bool = False, busy_ms: int | None = None) -> Any:
        if self._pid != os.getpid():
            self._after_fork()
        return super()._run(steps, write=write, check=check, busy_ms=busy_ms)

    def _after_fork(self) -> None:
        with self._reopen_lock:
            if self._pid == os.getpid():
                return
            _INHERITED.append(self.conn)
            fresh = _reopen(type(self), self.rates, self.path, self._db.file.identity)
            self.conn, self._db, self._ready, self._forks = fresh.conn, fresh._db, fresh._ready, fresh._forks
            self._owns_conn, fresh._owns_conn = True, False
            self._finalizer = None  # the file is the parent's
            self._pid = os.getpid()


class NoLock:
    """A lock that is always free: where v3 needed a lock and a transaction does the work."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        return None


def _reopen(
    cls: type[MultiprocessBucket], rates: list[Rate], path: str, identity: tuple[int, int] | None = None
) -> MultiprocessBucket:
    if not os.path.exists(path):
        raise FileNotFoundError(f"MultiprocessBucket file {path!r} is gone: its owning process closed it")
    bucket = cls._open(rates, path)
    if identity not in (None, bucket._db.file.identity):  # None: the owner could not look at its file
        bucket.close()
        raise BackendError(
            f"MultiprocessBucket file {path!r} was replaced by another file since its owning process "
            "opened it: this process would not share the owner's limit, so it refuses to use it"
        )
    return bucket


def _remove(folder: str, owner: int) -> None:
    # A forked child inherits the finalizer (it runs at exit): only the owner removes the file.
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)
