"""Input QoS: explicit policies, rosbag2-style matching, incompatible-QoS events (real rclpy)."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import spin_until
from sensor_msgs.msg import PointCloud2

from ov3d_ros.node.qos import CloudSubscription, adapt_to_offers, input_qos

BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_input_qos_policies():
    assert input_qos("reliable", 3).reliability == ReliabilityPolicy.RELIABLE
    assert input_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    assert input_qos("reliable", 3).depth == 3 and input_qos("reliable", 3).durability == DurabilityPolicy.VOLATILE
    with pytest.raises(ValueError):
        input_qos("auto", 1)


def test_adapt_to_offers_follows_rosbag2():
    qos, _ = adapt_to_offers([RELIABLE, RELIABLE], 2)
    assert qos.reliability == ReliabilityPolicy.RELIABLE and qos.depth == 2
    qos, why = adapt_to_offers([RELIABLE, BEST_EFFORT], 1)
    assert qos.reliability == ReliabilityPolicy.BEST_EFFORT and "mixed" in why
    qos, _ = adapt_to_offers([LATCHED], 1)
    assert qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
    qos, _ = adapt_to_offers([LATCHED, RELIABLE], 1)
    assert qos.durability == DurabilityPolicy.VOLATILE
    qos, why = adapt_to_offers([], 1)
    assert qos.reliability == ReliabilityPolicy.RELIABLE and "no publishers" in why


def _cloud() -> PointCloud2:
    return PointCloud2(height=1, width=0)


class _Rig:
    """A subscriber node with a CloudSubscription and a publisher node, spun together."""

    def __init__(self, context, reliability: str) -> None:
        self.sub_node = rclpy.create_node("qos_sub", context=context)
        self.pub_node = rclpy.create_node("qos_pub", context=context)
        self.received: list = []
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.sub_node)
        self.executor.add_node(self.pub_node)
        self.reliability = reliability
        self.cloud_sub: CloudSubscription | None = None

    def subscribe(self) -> CloudSubscription:
        self.cloud_sub = CloudSubscription(
            self.sub_node,
            PointCloud2,
            "cloud",
            self.received.append,
            reliability=self.reliability,
            depth=1,
            poll_s=0.1,
        )
        return self.cloud_sub

    def publisher(self, qos: QoSProfile):
        return self.pub_node.create_publisher(PointCloud2, "/cloud", qos)

    def publish_until_received(self, pub, timeout_s: float = 8.0) -> bool:
        def tick() -> bool:
            pub.publish(_cloud())
            return bool(self.received)

        return spin_until(self.executor, tick, timeout_s, step_s=0.1)

    def close(self) -> None:
        self.executor.shutdown()
        self.sub_node.destroy_node()
        self.pub_node.destroy_node()


@pytest.fixture
def rig_factory(ros_context):
    rigs = []

    def make(reliability: str) -> _Rig:
        rigs.append(_Rig(ros_context, reliability))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def test_reliable_input_reports_a_best_effort_publisher_as_incompatible(rig_factory):
    rig = rig_factory("reliable")
    sub = rig.subscribe()
    pub = rig.publisher(BEST_EFFORT)
    assert spin_until(rig.executor, lambda: sub.stats.incompatible > 0, 8.0), "no incompatible-QoS event"
    assert not rig.publish_until_received(pub, timeout_s=1.0)


def test_best_effort_input_receives_from_best_effort_publisher(rig_factory):
    rig = rig_factory("best_effort")
    sub = rig.subscribe()
    assert sub.qos.reliability == ReliabilityPolicy.BEST_EFFORT
    assert rig.publish_until_received(rig.publisher(BEST_EFFORT))
    assert sub.stats.incompatible == 0


def test_auto_matches_a_publisher_that_exists(rig_factory):
    rig = rig_factory("auto")
    pub = rig.publisher(BEST_EFFORT)
    sub = rig.subscribe()
    assert spin_until(rig.executor, lambda: sub.subscription is not None, 8.0), "auto never subscribed"
    assert sub.qos.reliability == ReliabilityPolicy.BEST_EFFORT
    assert rig.publish_until_received(pub)


def test_auto_waits_for_a_publisher_then_rematches_when_an_incompatible_one_joins(rig_factory):
    rig = rig_factory("auto")
    sub = rig.subscribe()
    rig.executor.spin_once(timeout_sec=0.3)
    assert sub.subscription is None  # nothing to match yet: nothing subscribed
    reliable_pub = rig.publisher(RELIABLE)
    assert spin_until(rig.executor, lambda: sub.qos is not None, 8.0)
    assert sub.qos.reliability == ReliabilityPolicy.RELIABLE
    assert rig.publish_until_received(reliable_pub)
    best_effort_pub = rig.publisher(BEST_EFFORT)
    assert spin_until(rig.executor, lambda: sub.qos.reliability == ReliabilityPolicy.BEST_EFFORT, 10.0), (
        "subscription not re-matched after a best-effort publisher joined"
    )
    rig.received.clear()
    assert rig.publish_until_received(best_effort_pub)
