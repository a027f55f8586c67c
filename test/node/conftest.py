"""Fixtures for the node tests: real rclpy over Fast DDS on loopback, one ROS domain per test."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# Discovery stays on this machine (Jazzy); set before any rclpy context exists.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: install the standalone extra or source ROS 2 Jazzy")

from ros_helpers import next_domain_id  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


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


SHARED_ROS2 = Path(os.environ.get("OV3D_ROS_TOOLS_SOURCE", REPO.parent / "shared" / "ros2"))


@pytest.fixture(scope="session")
def ros2_tools() -> Path:
    """launch, launch_ros and the ros2 command, installed from ../shared/ros2 into this environment
    once (ov3d-ros-tools: pip --no-deps of their Jazzy sources, composition_interfaces built with
    the project's interface builder). Returns the ros2 executable."""
    import importlib

    if not (SHARED_ROS2 / "ros2cli").is_dir():
        message = f"the Jazzy sources of launch/ros2cli are not at {SHARED_ROS2} (set OV3D_ROS_TOOLS_SOURCE)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has ../shared/ros2
        pytest.skip(message)
    _require_build_tools()
    from ov3d_ros.node.ros_tools import install

    install(SHARED_ROS2)
    importlib.invalidate_caches()
    ros2 = Path(sys.executable).parent / "ros2"
    assert ros2.is_file(), f"ros2 not installed in {ros2.parent}"
    return ros2


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
