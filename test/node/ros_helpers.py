"""Helpers shared by the node tests (importable as a plain module, unlike conftest)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

# Domain ids 1..100, offset by the process id so parallel test sessions rarely meet.
_DOMAIN_BASE = (os.getpid() * 7919) % 100
_domain_counter = itertools.count()


def next_domain_id() -> int:
    return 1 + (_DOMAIN_BASE + next(_domain_counter)) % 100


def spin_until(executor, predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout_s`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return predicate()
