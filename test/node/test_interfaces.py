"""ov3d_msgs: built by the pip-path builder, loaded by the importer, used over rclpy/Fast DDS."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from ros_helpers import spin_until

from ov3d_ros.core.types import DetectedObject, QueryError
from ov3d_ros.node import build_interfaces
from ov3d_ros.node.interfaces import load_ov3d_msgs
from ov3d_ros.node.object_messages import JSON_SCHEMA, objects_to_json, objects_to_msg, query_from_msg
from ov3d_ros.node.qos import RESULT_QOS


def _objects() -> list[DetectedObject]:
    return [
        DetectedObject(
            query="red mug",
            semantic_id=1,
            instance_id=1,
            center=np.array([1.0, 2.0, 0.5]),
            size=np.array([0.1, 0.1, 0.12]),
            orientation=np.array([0.0, 0.0, 0.0, 1.0]),
            centroid=np.array([1.01, 2.0, 0.49]),
            num_points=321,
            score=0.81,
        ),
        DetectedObject(
            query="trash can",
            semantic_id=2,
            instance_id=2,
            center=np.array([-1.0, 0.0, 0.3]),
            size=np.array([0.4, 0.4, 0.6]),
            orientation=np.array([0.0, 0.0, 0.7071068, 0.7071068]),
            centroid=np.array([-1.0, 0.02, 0.31]),
            num_points=4000,
            score=0.66,
        ),
    ]


@pytest.fixture(scope="module")
def msgs(ov3d_msgs_prefix):
    status = load_ov3d_msgs(ov3d_msgs_prefix, refresh=True)
    assert status.available, status.reason
    assert status.origin in (str(ov3d_msgs_prefix), "environment")
    import ov3d_msgs.msg

    return ov3d_msgs.msg


def test_object_array_travels_over_fast_dds(msgs, ros_context):
    """Publish an ObjectArray and receive it intact through a real DDS round trip."""
    from std_msgs.msg import Header

    node = rclpy_node("ov3d_msgs_roundtrip", ros_context)
    received = []
    node.create_subscription(msgs.ObjectArray, "objects", received.append, RESULT_QOS)
    pub = node.create_publisher(msgs.ObjectArray, "objects", RESULT_QOS)
    header = Header(frame_id="map")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    sent = objects_to_msg(_objects(), header, ["red mug", "trash can"], msgs)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    pub.publish(sent)
    assert spin_until(executor, lambda: bool(received), 10.0), "ObjectArray not received within 10 s"
    got = received[0]
    assert got.header.frame_id == "map" and got.header.stamp.sec == 12 and got.header.stamp.nanosec == 345
    assert list(got.queries) == ["red mug", "trash can"]
    assert [o.query for o in got.objects] == ["red mug", "trash can"]
    second = got.objects[1]
    assert (second.semantic_id, second.instance_id, second.num_points) == (2, 2, 4000)
    assert second.box_pose.orientation.z == pytest.approx(0.7071068, abs=1e-6)
    assert (second.box_size.x, second.box_size.y, second.box_size.z) == pytest.approx((0.4, 0.4, 0.6))
    assert second.centroid.y == pytest.approx(0.02)
    assert second.score == pytest.approx(0.66, abs=1e-6)
    executor.shutdown()
    node.destroy_node()


def test_query_message_maps_to_query_set(msgs):
    msg = msgs.Query(positives=["red  mug", "chair"], negatives=["wall"], threshold=float("nan"), use_background=True)
    qs = query_from_msg(msg, default_threshold=0.3)
    assert qs.positives == ("red mug", "chair") and qs.negatives == ("wall",)
    assert qs.threshold == 0.3 and qs.background
    msg.threshold = 0.0
    assert query_from_msg(msg, default_threshold=0.3).threshold is None  # 0 = off
    msg.threshold = -1.0
    with pytest.raises(QueryError, match="threshold"):
        query_from_msg(msg, default_threshold=None)
    msg.threshold, msg.positives = 0.5, ["", "chair"]
    with pytest.raises(QueryError):
        query_from_msg(msg, default_threshold=None)


def test_json_fallback_carries_the_same_facts():
    doc = json.loads(objects_to_json(_objects(), "map", 12_000_000_345, ["red mug", "trash can"]))
    assert doc["schema"] == JSON_SCHEMA and doc["frame_id"] == "map" and doc["stamp_ns"] == 12_000_000_345
    first = doc["objects"][0]
    assert first["query"] == "red mug" and first["num_points"] == 321 and first["semantic_id"] == 1
    assert first["center"] == [1.0, 2.0, 0.5] and math.isclose(first["score"], 0.81)


def test_rebuild_is_skipped_when_sources_are_unchanged(ov3d_msgs_prefix):
    result = build_interfaces.build(ov3d_msgs_prefix, install_deps=False)
    assert not result.rebuilt
    stamp = build_interfaces.read_stamp(ov3d_msgs_prefix)
    assert stamp["digest"] == build_interfaces.source_digest(build_interfaces.find_source())


def test_source_digest_follows_the_msg_and_srv_files(tmp_path):
    source = build_interfaces.find_source()
    assert source == Path(build_interfaces.__file__).resolve().parents[4] / "ov3d_msgs"  # beside the ov3d_ros package
    copy = tmp_path / "ov3d_msgs"
    shutil.copytree(source, copy)
    assert build_interfaces.source_digest(copy) == build_interfaces.source_digest(source)
    assert build_interfaces.package_name(copy) == "ov3d_msgs"
    for changed in ("msg/Object.msg", "srv/SetQuery.srv"):
        (copy / changed).write_text((source / changed).read_text() + "uint8 extra\n")
        assert build_interfaces.source_digest(copy) != build_interfaces.source_digest(source), changed
        (copy / changed).write_text((source / changed).read_text())


def test_unbuilt_prefix_is_reported_not_raised(tmp_path):
    """In a fresh process (no ov3d_msgs loaded) an empty prefix gives a clear reason."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from ov3d_ros.node.interfaces import load_ov3d_msgs
        status = load_ov3d_msgs(Path({str(tmp_path)!r}))
        print(status.available, "|", status.reason)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    available, reason = out.stdout.strip().split(" | ", 1)
    assert available == "False"
    assert "not built" in reason and "ov3d-build-msgs" in reason and str(tmp_path) in reason


def test_missing_wheels_names_registry_wheels(tmp_path, monkeypatch):
    """With no ament prefix holding the CMake packages, every one maps to its wheel."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    monkeypatch.setenv("CMAKE_PREFIX_PATH", "")
    monkeypatch.setattr(build_interfaces.sys, "prefix", str(tmp_path))
    missing = build_interfaces.missing_wheels()
    assert set(build_interfaces.CMAKE_PACKAGE_WHEELS.values()) <= set(missing)


def rclpy_node(name: str, context):
    import rclpy

    return rclpy.create_node(name, context=context)
