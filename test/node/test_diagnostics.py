"""NodeHealth: rates, latency, drops and levels on a controlled clock."""

from __future__ import annotations

import threading

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from ov3d_ros.node.diagnostics import NodeHealth


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _health(clock: FakeClock) -> NodeHealth:
    return NodeHealth(
        "ov3d_ros: segment_node",
        device="cpu",
        model="student-v1 (trained)",
        input_topic="/cloud",
        window_s=10.0,
        clock=clock,
    )


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_rates_latency_and_counters():
    clock = FakeClock()
    health = _health(clock)
    for i in range(21):  # 10 Hz input for 2 s, every other cloud processed, the rest dropped
        health.input()
        if i % 2 == 0:
            health.output(latency_s=0.120, processing_s=0.100, age_s=0.150)
        else:
            health.drop()
        clock.now += 0.1
    snap = health.snapshot()
    assert snap["input_rate_hz"] == pytest.approx(10.0)
    assert snap["output_rate_hz"] == pytest.approx(5.0)
    assert snap["latency_mean_ms"] == pytest.approx(120.0) and snap["processing_mean_ms"] == pytest.approx(100.0)
    assert (snap["received"], snap["processed"], snap["dropped"]) == (21, 11, 10)
    status = health.status()
    values = _values(status)
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "cpu"
    assert values["dropped"] == "10" and values["device"] == "cpu" and values["model"].startswith("student-v1")
    assert values["input_rate_hz"] == "10.00" and values["latency_mean_ms"] == "120.00"


def test_window_forgets_old_events():
    clock = FakeClock()
    health = _health(clock)
    health.input()
    health.output(latency_s=1.0, processing_s=1.0)
    clock.now += 30.0
    snap = health.snapshot()
    assert snap["input_rate_hz"] == 0.0 and snap["latency_mean_ms"] != snap["latency_mean_ms"]  # nan
    status = health.status()
    assert status.level == DiagnosticStatus.WARN and "no cloud on /cloud" in status.message
    assert _values(status)["latency_mean_ms"] == "n/a"


def test_levels_for_rejected_and_failed_clouds():
    clock = FakeClock()
    health = _health(clock)
    health.input()
    health.reject("truncated data: 100 bytes, expected 160")
    status = health.status()
    assert status.level == DiagnosticStatus.WARN and "truncated" in status.message
    health.input()
    health.failure("CUDA out of memory")
    assert health.status().level == DiagnosticStatus.ERROR
    health.input()
    health.output(latency_s=0.1, processing_s=0.1)  # recovered
    assert health.status().level == DiagnosticStatus.OK
    assert _values(health.status())["rejected"] == "1" and _values(health.status())["failures"] == "1"


def test_waiting_for_input_is_ok_at_start_then_warns():
    clock = FakeClock()
    health = _health(clock)
    assert health.status().level == DiagnosticStatus.OK and "waiting" in health.status().message
    clock.now += 11.0
    assert health.status().level == DiagnosticStatus.WARN


def test_array_message_and_thread_safety():
    clock = FakeClock()
    health = _health(clock)

    def hammer() -> None:
        for _ in range(2000):
            health.input()
            health.drop()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert health.received == 8000 and health.dropped == 8000
    array = health.array(Time(sec=5, nanosec=7))
    assert array.header.stamp.sec == 5 and len(array.status) == 1 and array.status[0].name == "ov3d_ros: segment_node"
