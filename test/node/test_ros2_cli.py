"""The README's ROS commands, run as commands with the real launch system and ros2 CLI.

`ros2 launch ov3d_ros segment.launch.py` starts the packaged model through launch_ros; the
commands below talk to it over Fast DDS, and each check is on the effect: a labelled cloud
arrives, the objects answer the new query, a parameter changed, a transition happened.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros2_cli import Launched, ros2_env, run
from ros_helpers import next_domain_id, spin_until
from sensor_msgs.msg import PointCloud2

from ov3d_ros.node.interfaces import load_ov3d_msgs
from ov3d_ros.node.qos import RESULT_QOS

START_TIMEOUT_S = 240.0
RESULT_TIMEOUT_S = 120.0
NS = "/segment_node"
pytestmark = pytest.mark.slow


def test_pip_install_registers_the_package_with_ament(ros2_tools, tmp_path):
    """`ros2 pkg prefix ov3d_ros` after the README's pip install, AMENT_PREFIX_PATH unset: the
    environment's .pth puts sys.prefix there, and data_files put the index entry and share/."""
    env = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    done = run("ros2 pkg prefix ov3d_ros", env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert os.path.realpath(done.stdout.strip()) == os.path.realpath(sys.prefix)
    share = run("ros2 pkg prefix --share ov3d_ros", env, tmp_path).stdout.strip()
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "ov3d_ros")
    for name in ("launch/segment.launch.py", "config/segment.yaml", "rviz/segment.rviz", "package.xml"):
        with open(os.path.join(share, name), "rb") as installed, open(os.path.join(package, name), "rb") as source:
            assert installed.read() == source.read(), (
                f"installed {name} is an older copy: rerun the README's pip install"
            )
    assert os.access(os.path.join(done.stdout.strip(), "lib", "ov3d_ros", "segment_node"), os.X_OK)


class Client:
    """A node of the test on the launch's domain: feeds clouds, collects results."""

    def __init__(self, domain_id: int, msgs) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("cli_test_client", context=self.context)
        self.cloud_pub = self.node.create_publisher(
            PointCloud2, f"{NS}/cloud", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.clouds: list[PointCloud2] = []
        self.objects: list = []
        self.node.create_subscription(PointCloud2, f"{NS}/labeled_cloud", self.clouds.append, 5)
        self.node.create_subscription(msgs.ObjectArray, f"{NS}/objects", self.objects.append, RESULT_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout_s: float) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def ov3d_msgs_module(ov3d_msgs_prefix):
    status = load_ov3d_msgs(ov3d_msgs_prefix, refresh=True)
    assert status.available, status.reason
    import ov3d_msgs.msg

    return ov3d_msgs.msg


@pytest.fixture(scope="module")
def launched(ros2_tools, ov3d_msgs_prefix, ov3d_msgs_module, tmp_path_factory):
    """`ros2 launch ov3d_ros segment.launch.py rviz:=false device:=cpu` (the packaged model)."""
    cwd = tmp_path_factory.mktemp("launch")
    env = ros2_env(next_domain_id(), ov3d_msgs_prefix)
    launch = Launched("ros2 launch ov3d_ros segment.launch.py rviz:=false device:=cpu", env, cwd)
    client = Client(int(env["ROS_DOMAIN_ID"]), ov3d_msgs_module)
    try:
        up = client.spin_until(
            lambda: client.cloud_pub.get_subscription_count() > 0 or launch.proc.poll() is not None, START_TIMEOUT_S
        )
        assert up and launch.proc.poll() is None, launch.log()[-3000:]
        print(f"ros2 launch: node subscribed after {time.monotonic() - launch.started:.1f} s")
        yield launch, client
    finally:
        client.close()
        code = launch.stop()
    log = launch.log()
    assert "Traceback" not in log, log[-3000:]
    assert code == 0, log[-3000:]


def _cli(launch: Launched, command: str, discovery_timeout_s: float = 30.0):
    """One command; again while the ros2 daemon has not discovered the node yet ("Node not
    found"): the node's log line can come before a fresh daemon sees its services."""
    deadline = time.monotonic() + discovery_timeout_s
    while True:
        done = run(command, launch.env, launch.cwd)
        out = done.stdout + done.stderr
        if "Node not found" not in out or time.monotonic() > deadline:
            return done.returncode, out
        time.sleep(1.0)


def _serve(client: Client, cloud: PointCloud2) -> None:
    clouds, objects = len(client.clouds), len(client.objects)
    client.cloud_pub.publish(cloud)
    assert client.spin_until(lambda: len(client.clouds) > clouds and len(client.objects) > objects, RESULT_TIMEOUT_S), (
        "no result"
    )


def test_topic_pub_query_then_param_get(launched, scannet_cloud):
    launch, client = launched
    code, out = _cli(
        launch, """ros2 topic pub --once /segment_node/query std_msgs/String "data: 'chair; red mug; trash can'" """
    )
    assert code == 0, out
    code, out = _cli(launch, "ros2 param get /segment_node queries")
    assert code == 0 and "String value is: chair; red mug; trash can" in out, out
    _serve(client, scannet_cloud)
    assert list(client.objects[-1].queries) == ["chair", "red mug", "trash can"]
    assert client.clouds[-1].width * client.clouds[-1].height == scannet_cloud.width * scannet_cloud.height


def test_param_set_get_describe(launched, scannet_cloud):
    launch, client = launched
    _serve(client, scannet_cloud)
    results = len(client.clouds)
    code, out = _cli(launch, "ros2 param set /segment_node score_threshold 0.9")
    assert code == 0 and "Set parameter successful" in out, out
    code, out = _cli(launch, "ros2 param get /segment_node score_threshold")
    assert "Double value is: 0.9" in out, out
    # a query knob re-answers the last cloud without a new one
    assert client.spin_until(lambda: len(client.clouds) > results, RESULT_TIMEOUT_S), "no re-query after param set"
    code, out = _cli(launch, "ros2 param describe /segment_node score_threshold")
    assert code == 0 and "best query score is below this is background" in out and "Min value: 0.0" in out, out
    code, out = _cli(launch, "ros2 param set /segment_node device cuda")
    assert "Setting parameter failed" in out and "read-only" in out, out
    assert "String value is: cpu" in _cli(launch, "ros2 param get /segment_node device")[1]
    assert _cli(launch, "ros2 param set /segment_node score_threshold 0.0")[0] == 0


def test_service_call_set_query(launched, scannet_cloud):
    launch, client = launched
    _serve(client, scannet_cloud)
    objects = len(client.objects)
    code, out = _cli(
        launch, """ros2 service call /segment_node/set_query ov3d_msgs/srv/SetQuery "{positives: [sofa, lamp]}" """
    )
    assert code == 0 and "success=True" in out and "queries=['sofa', 'lamp']" in out, out
    assert client.spin_until(
        lambda: len(client.objects) > objects and list(client.objects[-1].queries) == ["sofa", "lamp"], RESULT_TIMEOUT_S
    ), "no re-query with the new query after set_query"
    # refused: the caller is told why, and the query in force stays
    code, out = _cli(launch, """ros2 service call /segment_node/set_query ov3d_msgs/srv/SetQuery "{positives: []}" """)
    assert "success=False" in out and "no positives given" in out and "queries=['sofa', 'lamp']" in out, out
    assert "String value is: sofa; lamp" in _cli(launch, "ros2 param get /segment_node queries")[1]


def test_lifecycle_get_deactivate_activate(launched, scannet_cloud):
    launch, client = launched
    code, out = _cli(launch, "ros2 lifecycle get /segment_node")
    assert code == 0 and out.startswith("active [3]"), out
    code, out = _cli(launch, "ros2 lifecycle set /segment_node deactivate")
    assert code == 0 and "Transitioning successful" in out, out
    assert _cli(launch, "ros2 lifecycle get /segment_node")[1].startswith("inactive [2]")
    assert client.spin_until(lambda: client.cloud_pub.get_subscription_count() == 0, 10.0), "inactive but subscribed"
    marked = copy.deepcopy(scannet_cloud)
    marked.header.stamp.sec = 42  # results of earlier tests may still be in the client's queue
    client.cloud_pub.publish(marked)
    client.spin_until(lambda: False, 3.0)
    assert not [c for c in client.clouds if c.header.stamp.sec == 42], "an inactive node published"
    code, out = _cli(launch, "ros2 lifecycle set /segment_node activate")
    assert code == 0 and "Transitioning successful" in out, out
    assert client.spin_until(lambda: client.cloud_pub.get_subscription_count() > 0, 10.0)
    _serve(client, scannet_cloud)


def test_launch_unconfigured_then_a_bad_checkpoint_fails_configure(ros2_tools, ov3d_msgs_prefix, tmp_path):
    env = ros2_env(next_domain_id(), ov3d_msgs_prefix)
    missing = tmp_path / "no_such_model"
    launch = Launched(
        f"ros2 launch ov3d_ros segment.launch.py rviz:=false autostart:=false checkpoint:={missing}", env, tmp_path
    )
    try:
        assert launch.wait_for_log("unconfigured, waiting for a lifecycle manager", START_TIMEOUT_S), launch.log()[
            -2000:
        ]
        code, out = _cli(launch, "ros2 lifecycle get /segment_node")
        assert code == 0 and out.startswith("unconfigured [1]"), out + launch.log()[-2000:]
        code, out = _cli(launch, "ros2 lifecycle set /segment_node configure")
        assert "Transitioning failed" in out, out  # (this ros2cli exits 0 after printing it)
        assert launch.wait_for_log(f"configure failed: no checkpoint at {missing}", 10.0), launch.log()[-2000:]
        assert _cli(launch, "ros2 lifecycle get /segment_node")[1].startswith("unconfigured [1]")
        assert launch.proc.poll() is None, "the node ended instead of staying unconfigured"
    finally:
        code = launch.stop()
    assert "Traceback" not in launch.log(), launch.log()[-3000:]


def test_launch_demo(ros2_tools, ov3d_msgs_prefix, ov3d_msgs_module, tmp_path):
    """`ros2 launch ov3d_ros segment.launch.py demo:=true rviz:=false`: the packaged recording and
    model through the real launch system; the summary is printed and labelled clouds arrive."""
    env = ros2_env(next_domain_id(), ov3d_msgs_prefix)
    client = Client(int(env["ROS_DOMAIN_ID"]), ov3d_msgs_module)
    launch = Launched("ros2 launch ov3d_ros segment.launch.py demo:=true rviz:=false", env, tmp_path)
    try:
        assert launch.wait_for_log("labelled cloud rendered to", START_TIMEOUT_S + 120), launch.log()[-3000:]
        print(f"ros2 launch demo: summary after {time.monotonic() - launch.started:.1f} s")
        assert client.spin_until(lambda: client.clouds and client.objects, 30.0), "no labelled cloud from the demo"
    finally:
        client.close()
        code = launch.stop()
    log = launch.log()
    assert "demo: 2 cloud(s)" in log and "cloud 1:" in log and "cloud 2:" in log, log[-3000:]
    assert (tmp_path / "ov3d_demo.png").is_file()
    assert "Traceback" not in log and code == 0, log[-3000:]
