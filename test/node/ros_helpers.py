"""Helpers shared by the node tests (importable as a plain module, unlike conftest)."""
from __future__ import annotations

import time
from typing import Callable


def spin_until(executor, predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout_s`` passes; returns the predicate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return predicate()
