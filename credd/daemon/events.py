"""Fan-out of agent events (locked, unlocked, entry_changed) to subscribed connections.

Each event is encoded once and queued per subscriber. A queue is bounded: a
subscriber that stops reading is dropped (its connection closed) rather than
allowed to grow the agent's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from credd import protocol

QUEUE_LIMIT = 256


class Subscription:
    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self._frames: deque[bytes] = deque()
        self._limit = limit
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, frame: bytes) -> None:
        if len(self._frames) >= self._limit:
            self.overflowed = True
        else:
            self._frames.append(frame)
        self._ready.set()

    def close(self) -> None:
        """End the stream once the frames already queued are sent."""
        self.closed = True
        self._ready.set()

    async def next(self) -> bytes | None:
        """The next event frame; None once closed and drained, or fallen too far behind."""
        while not self._frames and not self.overflowed and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed or not self._frames:
            return None
        return self._frames.popleft()


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close_all(self) -> None:
        for sub in self._subscribers:
            sub.close()

    def publish(self, event: protocol.Event) -> None:
        if not self._subscribers:
            return
        frame = protocol.encode(event)
        for sub in self._subscribers:
            sub.push(frame)


async def stream(sub: Subscription, reader: asyncio.StreamReader,
                 send: Callable[[bytes], Awaitable[None]]) -> None:
    """Forward events until the client closes, sends anything, or falls behind."""
    closed = asyncio.ensure_future(reader.read(1))
    try:
        while True:
            nxt = asyncio.ensure_future(sub.next())
            await asyncio.wait({closed, nxt}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                return
            frame = nxt.result()
            if frame is None:
                return
            await send(frame)
    finally:
        closed.cancel()
