"""ov3d-segment --demo: a recording in, an object summary and a PNG out."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT
from ov3d_ros.io.bags import write_bag
from ov3d_ros.io.scan import Scan
from ov3d_ros.node.demo import DEMO_BAG, DEMO_QUERIES, demo_queries

TIMEOUT_S = 600


def _run(args: list[str], domain_id: int, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return subprocess.run(
        [sys.executable, "-m", "ov3d_ros.node.segment_node", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_demo_queries_come_from_the_recording():
    annotations = {
        "entities": {
            "1": {"category": "Chair"},
            "2": {"category": "chair"},
            "3": {"category": "wall"},
            "4": {"category": "potted  plant", "captions": ["a green plant"]},
        }
    }
    assert demo_queries(annotations) == "chair; potted plant"
    assert demo_queries(None) == DEMO_QUERIES and demo_queries({"entities": {}}) == DEMO_QUERIES


def test_demo_plays_a_recording_prints_objects_and_writes_a_png(
    tmp_path, scannet_scan, random_checkpoint, ros_domain_id
):
    half = scannet_scan.subset(np.arange(len(scannet_scan)) % 2 == 0)
    half.stamp_ns, full = (
        1_000_000_000,
        Scan(
            points=scannet_scan.points,
            colors=scannet_scan.colors,
            labels=np.ones(len(scannet_scan), np.int32),
            stamp_ns=2_000_000_000,
        ),
    )
    bag = write_bag(
        tmp_path / "scene", [half, full], annotations={"objects": [{"category": "sofa"}, {"category": "table"}]}
    )
    png = tmp_path / "out" / "demo.png"
    done = _run(
        [
            "--demo",
            "--demo-bag",
            str(bag),
            "--demo-output",
            str(png),
            "--ros-args",
            "-p",
            f"checkpoint:={random_checkpoint}",
            "-p",
            "allow_untrained:=true",
            "-p",
            "device:=cpu",
        ],
        ros_domain_id,
        tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "demo: 2 cloud(s)" in out and "queries: sofa; table" in out
    assert "cloud 1:" in out and "cloud 2:" in out
    assert any(line.startswith("sofa: ") for line in out.splitlines())
    assert any(line.startswith("table: ") for line in out.splitlines())
    assert png.is_file() and png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_packaged_demo(tmp_path, ros_domain_id):
    """The README's main-job command on the shipped recording and model."""
    if not (DEMO_BAG / "metadata.yaml").is_file():
        pytest.skip(f"the demo recording is not packaged yet ({DEMO_BAG})")
    if not (DEFAULT_CHECKPOINT / "model.json").is_file():
        done = _run(["--demo"], ros_domain_id, tmp_path)
        assert done.returncode == 1 and "cannot start: no trained model ships" in done.stderr
        assert "Traceback" not in done.stderr
        pytest.skip(f"no packaged model yet ({DEFAULT_CHECKPOINT}); checked the clear refusal instead")
    done = _run(["--demo", "--ros-args", "-p", "device:=cpu"], ros_domain_id, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ov3d_demo.png").is_file()
