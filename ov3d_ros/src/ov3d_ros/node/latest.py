"""A one-item hand-over between the subscription callback and the worker: newest wins.

The executor thread ``put`` s every cloud; the worker ``take`` s when it is free. A cloud
that is replaced before the worker took it is dropped and counted, so a slow network never
builds a queue (memory stays at one waiting cloud) and the worker always sees the newest.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._wakeups = 0  # pokes without an item (new query, shutdown)
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced one the worker never took (a drop)."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def poke(self) -> None:
        """Wake a waiting ``take`` without an item (it returns None)."""
        with self._cond:
            self._wakeups += 1
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (and empty the slot), or None after ``timeout`` or a ``poke``."""
        with self._cond:
            if self._item is None and not self._wakeups:
                self._cond.wait(timeout)
            self._wakeups = 0
            item, self._item = self._item, None
            return item

    def pending(self) -> bool:
        with self._cond:
            return self._item is not None
