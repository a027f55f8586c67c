"""The ov3d-segment entry point as its own process, talked to over Fast DDS from this one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import spin_until
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from ov3d_ros.node.qos import QUERY_QOS, RESULT_QOS

START_TIMEOUT_S = 240.0  # torch + the text encoder + a random network on a shared 2-core CPU


def _start(args: list[str], domain_id: int, tmp_path) -> subprocess.Popen:
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        OV3D_MSGS_PREFIX=str(tmp_path / "no_ov3d_msgs"),
        PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "node.log", "w")  # noqa: SIM115 - the node process writes it until the test ends
    return subprocess.Popen(
        [sys.executable, "-m", "ov3d_ros.node.segment_node", *args], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def test_node_process_serves_the_scannet_scan_with_json_objects(
    ros_context, ros_domain_id, random_checkpoint, scannet_cloud, tmp_path
):
    proc = _start(
        [
            "--ros-args",
            "-p",
            f"checkpoint:={random_checkpoint}",
            "-p",
            "allow_untrained:=true",
            "-p",
            "device:=cpu",
            "-p",
            "queries:=chair; table",
            "-r",
            "__ns:=/robot1",
        ],
        ros_domain_id,
        tmp_path,
    )
    client = rclpy.create_node("process_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(client)
    try:
        ns = "/robot1/segment_node"
        clouds, markers, objects = [], [], []
        cloud_pub = client.create_publisher(
            PointCloud2, f"{ns}/cloud", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        query_pub = client.create_publisher(String, f"{ns}/query", QUERY_QOS)
        client.create_subscription(PointCloud2, f"{ns}/labeled_cloud", clouds.append, 5)
        client.create_subscription(MarkerArray, f"{ns}/markers", markers.append, RESULT_QOS)
        client.create_subscription(String, f"{ns}/objects_json", objects.append, RESULT_QOS)
        # a query sent before the node is up reaches it (transient local)
        query_pub.publish(String(data="sofa; chair; lamp"))
        started = spin_until(
            executor, lambda: cloud_pub.get_subscription_count() > 0 or proc.poll() is not None, START_TIMEOUT_S
        )
        assert started and proc.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
        time.sleep(0.5)
        cloud_pub.publish(scannet_cloud)
        ok = spin_until(executor, lambda: clouds and markers and objects, START_TIMEOUT_S)
        assert ok, (tmp_path / "node.log").read_text()[-3000:]
        doc = json.loads(objects[-1].data)
        assert doc["queries"] == ["sofa", "chair", "lamp"] and doc["frame_id"] == "map"
        assert clouds[-1].width == scannet_cloud.width * scannet_cloud.height
    finally:
        executor.shutdown()
        client.destroy_node()
        code = _stop(proc)
    log = (tmp_path / "node.log").read_text()
    assert code == 0, log[-3000:]
    assert "objects: JSON on /robot1/segment_node/objects_json" in log
    assert "Traceback" not in log, log[-3000:]


def test_missing_checkpoint_exits_with_one_clear_line(ros_domain_id, tmp_path):
    proc = _start(["--ros-args", "-p", f"checkpoint:={tmp_path / 'absent'}"], ros_domain_id, tmp_path)
    code = proc.wait(timeout=START_TIMEOUT_S)
    log = (tmp_path / "node.log").read_text()
    assert code == 1
    assert f"[segment_node] cannot start: no checkpoint at {tmp_path / 'absent'}" in log
    assert "Traceback" not in log


def test_bad_cli_flag_is_an_argparse_error(ros_domain_id, tmp_path):
    proc = _start(["--no-such-flag"], ros_domain_id, tmp_path)
    assert proc.wait(timeout=START_TIMEOUT_S) == 2
    assert "unrecognized arguments: --no-such-flag" in (tmp_path / "node.log").read_text()
