"""Requests that concurrent callers make at the same moment, sent to a server in one call.

A remote bucket's client spends more time on each call than the server spends deciding, so
under concurrency one call carrying many decisions is worth far more than many calls. Tasks on
one event loop can gather their requests; threads cannot without waiting for each other, so the
sync twin sends each request alone. Both twins live here, side by side, like ``_concurrency.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from ._concurrency import AsyncEvent, ashielded

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import TypeAlias

    # What sends a batch of requests and returns their replies, in order.
    BatchSender: TypeAlias = "Callable[[list[Any]], list[Any]]"
    AsyncBatchSender: TypeAlias = "Callable[[list[Any]], Awaitable[list[Any]]]"


class _Batch:
    __slots__ = ("done", "error", "replies", "requests")

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.replies: list[Any] = []
        self.error: BaseException | None = None
        self.done: AsyncEvent | None = None  # made when a second caller joins


class AsyncBatcher:
    """Sends requests through ``send(requests) -> replies``, gathering those made together.

    The first caller leads a batch: it lets the other tasks that are ready run once (they
    join), closes the batch and sends it; each caller then gets its own reply, in the order
    the requests were made. No lock is held while a batch is in flight: later callers start the
    next one at once. A leader that others joined sends its batch even when cancelled, for their
    sake; a leader left alone is cancelled as a plain call is. Either way a cancelled caller's
    request may still be decided, as when a call is cancelled after it was sent.

    :param limit: most requests in one batch, so one call never holds the server for long.
    """

    def __init__(self, send: AsyncBatchSender, limit: int = 256) -> None:
        self._send = send
        self._limit = limit
        self._open: _Batch | None = None

    async def submit(self, request: Any) -> Any:
        """Send ``request`` (with whatever joins it) and return its reply, or raise the call's error."""
        # No lock: nothing awaits between reading and updating the open batch.
        batch = self._open
        leading = batch is None or len(batch.requests) >= self._limit
        if batch is None or leading:
            batch = self._open = _Batch()
        elif batch.done is None:
            batch.done = AsyncEvent()
        index = len(batch.requests)
        batch.requests.append(request)
        if leading:
            try:
                await anyio.lowlevel.checkpoint()  # the tasks ready to make a request now join this batch
            except BaseException:  # cancelled: a batch that others joined still goes
                self._close(batch)
                if batch.done is not None:
                    await ashielded(self._deliver, batch)
                raise
            self._close(batch)
            if batch.done is None:
                # Alone: no one else waits for this call, so it needs no shield (a shield costs
                # more than the rest of the batcher on a lone caller's every call).
                return (await self._send(batch.requests))[0]
            await ashielded(self._deliver, batch)
        else:
            assert batch.done is not None
            await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.replies[index]

    def _close(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None  # closed: nobody joins a batch in flight

    async def _deliver(self, batch: _Batch) -> None:
        """Send a batch that others joined and wake them, whatever the call does."""
        try:
            batch.replies = await self._send(batch.requests)
        except BaseException as error:  # every caller of the batch raises it
            batch.error = error
        finally:
            assert batch.done is not None
            batch.done.set()


class Batcher:
    """The sync twin: each request is sent alone, at once, in the caller's thread."""

    def __init__(self, send: BatchSender, limit: int = 256) -> None:
        self._send = send

    def submit(self, request: Any) -> Any:
        return self._send([request])[0]
