"""A SegmentNode plus a client node that talks to it over real topics (shared by the node tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import spin_until
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from ov3d_ros.io.pointcloud2 import read_fields
from ov3d_ros.node.qos import QUERY_QOS, RESULT_QOS
from ov3d_ros.node.segment_node import SegmentNode

NS = "/segment_node"


class NodeRig:
    def __init__(
        self, context: Any, segmenter: Any, overrides: dict[str, Any] | None = None, cloud_qos: QoSProfile | None = None
    ) -> None:
        params = [Parameter(name, value=value) for name, value in (overrides or {}).items()]
        self.node = SegmentNode(segmenter=segmenter, context=context, parameter_overrides=params)
        self.node.bring_up()  # configure + activate, as ov3d-segment does
        self.client = rclpy.create_node("test_client", context=context)
        qos = cloud_qos or QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.cloud_pub = self.client.create_publisher(PointCloud2, f"{NS}/cloud", qos)
        self.query_pub = self.client.create_publisher(String, f"{NS}/query", QUERY_QOS)
        self.clouds: list[PointCloud2] = []
        self.markers: list[MarkerArray] = []
        self.objects: list[Any] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.client.create_subscription(PointCloud2, f"{NS}/labeled_cloud", self.clouds.append, 5)
        self.client.create_subscription(MarkerArray, f"{NS}/markers", self.markers.append, RESULT_QOS)
        objects_type = self.node._msgs.ObjectArray if self.node._msgs is not None else String
        objects_topic = f"{NS}/objects" if self.node._msgs is not None else f"{NS}/objects_json"
        self.client.create_subscription(objects_type, objects_topic, self.objects.append, RESULT_QOS)
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)

    def wait_for_match(self, timeout_s: float = 10.0) -> None:
        ok = self.spin_until(lambda: self.cloud_pub.get_subscription_count() > 0, timeout_s)
        assert ok, "the node's ~/cloud subscription was not discovered"

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def spin_for(self, seconds: float) -> None:
        spin_until(self.executor, lambda: False, seconds)

    def diagnostic_values(self) -> dict[str, str]:
        status = self.diagnostics[-1].status[0]
        return {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.client.destroy_node()


def labels_of(cloud: PointCloud2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(semantic, instance, score) of a labelled cloud, from its raw fields."""
    fields = read_fields(cloud, ["label", "score"])
    label = np.asarray(fields["label"]).astype(np.uint32)
    return (label >> 16).astype(np.int32), (label & 0xFFFF).astype(np.int32), np.asarray(fields["score"])
