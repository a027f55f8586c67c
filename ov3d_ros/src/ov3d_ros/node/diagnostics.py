"""What the node reports on /diagnostics: input rate, latency, drops, device, model.

``NodeHealth`` collects events from the subscription callback and the worker thread (it is
thread-safe) and turns them into one ``diagnostic_msgs/DiagnosticStatus``. Rates and
latencies cover a sliding window so the numbers describe now, not the whole run; counters
(drops, rejected clouds, transport losses) are totals since start.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

WINDOW_S = 10.0


@dataclass
class _Window:
    """Timestamps (and optional values) of events within the last ``span`` seconds."""

    span: float
    times: deque = field(default_factory=deque)
    values: deque = field(default_factory=deque)

    def add(self, now: float, value: float = 0.0) -> None:
        self.times.append(now)
        self.values.append(value)
        self.trim(now)

    def trim(self, now: float) -> None:
        while self.times and now - self.times[0] > self.span:
            self.times.popleft()
            self.values.popleft()

    def rate(self, now: float) -> float:
        self.trim(now)
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)

    def stats(self, now: float) -> tuple[float, float]:
        """(mean, max) of the values in the window; (nan, nan) when empty."""
        self.trim(now)
        if not self.values:
            return float("nan"), float("nan")
        arr = np.fromiter(self.values, dtype=np.float64)
        return float(arr.mean()), float(arr.max())


class NodeHealth:
    """Thread-safe counters and windows for the segment node's diagnostics."""

    def __init__(
        self,
        name: str,
        *,
        device: str,
        model: str,
        input_topic: str,
        window_s: float = WINDOW_S,
        clock: Any = time.monotonic,
    ) -> None:
        self.name = name
        self.device = device
        self.model = model
        self.input_topic = input_topic
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._inputs = _Window(window_s)
        self._outputs = _Window(window_s)
        self._latency = _Window(window_s)  # receive -> published, seconds
        self._processing = _Window(window_s)  # network + query, seconds
        self._age = _Window(window_s)  # cloud stamp -> published, seconds (needs synced clocks)
        self.received = 0
        self.processed = 0
        self.dropped = 0  # replaced in the newest-only slot before being processed
        self.rejected = 0  # malformed clouds
        self.transport_lost = 0  # reported by DDS (best effort)
        self.failures = 0  # the model raised
        self.last_problem = ""
        self._last_problem_at = -float("inf")
        self._last_success_at = -float("inf")
        self._last_input_at: float | None = None
        self._started = clock()
        self.queries = ""

    def input(self) -> None:
        with self._lock:
            self.received += 1
            self._last_input_at = self._clock()
            self._inputs.add(self._last_input_at)

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_problem = f"rejected cloud: {reason}"
            self._last_problem_at = self._clock()

    def failure(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_problem = f"processing failed: {reason}"
            self._last_problem_at = self._clock()

    def set_transport_lost(self, total: int) -> None:
        with self._lock:
            self.transport_lost = total

    def output(self, *, latency_s: float, processing_s: float, age_s: float | None = None) -> None:
        with self._lock:
            now = self._clock()
            self.processed += 1
            self._outputs.add(now)
            self._latency.add(now, latency_s)
            self._processing.add(now, processing_s)
            if age_s is not None:
                self._age.add(now, age_s)
            self._last_success_at = now

    def snapshot(self) -> dict[str, Any]:
        """All numbers as plain values (also what tests and the benchmark read)."""
        with self._lock:
            now = self._clock()
            lat_mean, lat_max = self._latency.stats(now)
            proc_mean, _ = self._processing.stats(now)
            age_mean, _ = self._age.stats(now)
            return {
                "input_rate_hz": self._inputs.rate(now),
                "output_rate_hz": self._outputs.rate(now),
                "latency_mean_ms": lat_mean * 1e3,
                "latency_max_ms": lat_max * 1e3,
                "processing_mean_ms": proc_mean * 1e3,
                "stamp_age_mean_ms": age_mean * 1e3,
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "rejected": self.rejected,
                "transport_lost": self.transport_lost,
                "failures": self.failures,
                "last_problem": self.last_problem,
                "seconds_since_input": None if self._last_input_at is None else now - self._last_input_at,
                "problem_recent": now - self._last_problem_at < self.window_s
                and self._last_problem_at > self._last_success_at,
                "uptime_s": now - self._started,
            }

    def status(self) -> DiagnosticStatus:
        snap = self.snapshot()
        level, message = DiagnosticStatus.OK, "processing clouds"
        if snap["problem_recent"]:
            level, message = DiagnosticStatus.WARN, snap["last_problem"]
        if snap["failures"] and snap["problem_recent"] and snap["last_problem"].startswith("processing failed"):
            level = DiagnosticStatus.ERROR
        elif snap["received"] == 0:
            level = DiagnosticStatus.WARN if snap["uptime_s"] > self.window_s else DiagnosticStatus.OK
            message = f"waiting for clouds on {self.input_topic}"
        elif snap["seconds_since_input"] is not None and snap["seconds_since_input"] > self.window_s:
            level, message = (
                DiagnosticStatus.WARN,
                f"no cloud on {self.input_topic} for {snap['seconds_since_input']:.0f} s",
            )

        def fmt(value: Any) -> str:
            if isinstance(value, float):
                return "n/a" if value != value else f"{value:.2f}"
            return "n/a" if value is None else str(value)

        keys = (
            "input_rate_hz",
            "output_rate_hz",
            "latency_mean_ms",
            "latency_max_ms",
            "processing_mean_ms",
            "stamp_age_mean_ms",
            "received",
            "processed",
            "dropped",
            "rejected",
            "transport_lost",
            "failures",
        )
        values = [KeyValue(key=k, value=fmt(snap[k])) for k in keys]
        values += [
            KeyValue(key="device", value=self.device),
            KeyValue(key="model", value=self.model),
            KeyValue(key="input_topic", value=self.input_topic),
            KeyValue(key="queries", value=self.queries),
            KeyValue(key="last_problem", value=snap["last_problem"] or "none"),
        ]
        return DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.device, values=values)

    def array(self, stamp: Any) -> DiagnosticArray:
        """The message for /diagnostics, stamped with the node's clock (``builtin_interfaces/Time``)."""
        from std_msgs.msg import Header

        return DiagnosticArray(header=Header(stamp=stamp), status=[self.status()])
