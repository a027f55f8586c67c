"""Fixtures for the node tests: real rclpy over Fast DDS on loopback, one ROS domain per test."""
from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

# Discovery stays on this machine (Jazzy); set before any rclpy context exists.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: install the standalone extra or source ROS 2 Jazzy")

REPO = Path(__file__).resolve().parents[2]

# Domain ids 1..100, offset by the process id so parallel test sessions rarely meet.
_DOMAIN_BASE = (os.getpid() * 7919) % 100
_domain_counter = itertools.count()


def next_domain_id() -> int:
    return 1 + (_DOMAIN_BASE + next(_domain_counter)) % 100


@pytest.fixture
def ros_domain_id() -> int:
    return next_domain_id()


@pytest.fixture
def ros_context(ros_domain_id):
    """A fresh rclpy context on its own domain, shut down after the test."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    context.try_shutdown()


def _require_build_tools() -> None:
    from ov3d_ros.node.build_interfaces import missing_tools, missing_wheels

    problems = []
    if missing_tools():
        problems.append(f"build tools missing: {', '.join(missing_tools())} (apt-get install cmake make gcc g++)")
    if missing_wheels():
        problems.append(f"build wheels missing: {' '.join(missing_wheels())} (pip install them)")
    if problems:
        message = "cannot build ov3d_msgs: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them: a missing one there is a packaging bug
        pytest.skip(message)


@pytest.fixture(scope="session")
def ov3d_msgs_prefix(tmp_path_factory) -> Path:
    """ov3d_msgs built once per session by the pip-path builder into a temporary prefix."""
    if shutil.which("cmake") is None and not os.environ.get("CI"):
        pytest.skip("cmake not found: cannot build ov3d_msgs")
    _require_build_tools()
    from ov3d_ros.node.build_interfaces import build

    prefix = tmp_path_factory.mktemp("ov3d_msgs_prefix")
    build(prefix, install_deps=False)
    return prefix


@pytest.fixture(scope="session")
def plumbing_segmenter(random_checkpoint):
    from ov3d_ros.core.segmenter import Segmenter

    return Segmenter.from_checkpoint(random_checkpoint, device="cpu", allow_untrained=True)


@pytest.fixture(scope="session")
def scannet_scan(scannet_npz):
    import numpy as np

    from ov3d_ros.io.scan import Scan

    data = np.load(scannet_npz)
    return Scan(points=data["xyz"], colors=data["rgb"], frame_id="map", stamp_ns=1_700_000_000_000_000_000)


@pytest.fixture(scope="session")
def scannet_cloud(scannet_scan):
    """The real ScanNet scan as an rclpy PointCloud2 (x, y, z, rgb)."""
    from ov3d_ros.io.messages import rclpy_message_types
    from ov3d_ros.io.pointcloud2 import scan_to_cloud

    return scan_to_cloud(scannet_scan, rclpy_message_types())
