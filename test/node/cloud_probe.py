"""One side of a two-process PointCloud2 transfer (run as a script by test_fastdds_profile.py).

    python cloud_probe.py pub --mb 1.3 --count 12 --reliability best_effort
    python cloud_probe.py sub --count 12 --reliability best_effort

Prints one JSON line: {"sent": n, "bytes": b} or {"received": n}. The domain id and any
Fast DDS profile come from the environment (ROS_DOMAIN_ID, FASTRTPS_DEFAULT_PROFILES_FILE).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2, PointField

TOPIC = "probe_cloud"


def _qos(reliability: str) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=policy)


def _cloud(megabytes: float) -> PointCloud2:
    n = int(megabytes * 1e6 / 16)
    fields = [PointField(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, c in enumerate("xyz")]
    msg = PointCloud2(height=1, width=n, point_step=16, row_step=16 * n, is_dense=True, fields=fields)
    msg.data = np.random.default_rng(0).random(n * 4, dtype=np.float32).tobytes()
    return msg


def publish(node, args) -> dict:
    pub = node.create_publisher(PointCloud2, TOPIC, _qos(args.reliability))
    msg = _cloud(args.mb)
    deadline = time.monotonic() + args.timeout
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # let discovery settle in both directions
    matched = pub.get_subscription_count()
    for _ in range(args.count):
        pub.publish(msg)
        time.sleep(1.0 / args.rate)
    time.sleep(2.0)  # keep the writer alive while the last samples drain
    return {"sent": args.count, "bytes": len(msg.data), "matched": matched}


def subscribe(node, args) -> dict:
    sizes: list[int] = []
    node.create_subscription(PointCloud2, TOPIC, lambda m: sizes.append(len(m.data)), _qos(args.reliability))
    start = time.monotonic()
    seen_publisher_at = None
    while time.monotonic() - start < args.timeout and len(sizes) < args.count:
        rclpy.spin_once(node, timeout_sec=0.05)
        if seen_publisher_at is None and node.count_publishers(TOPIC):
            seen_publisher_at = time.monotonic()
        if seen_publisher_at and time.monotonic() - seen_publisher_at > 1.0 + args.count / args.rate + 4.0:
            break
    return {"received": len(sizes)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("pub", "sub"))
    parser.add_argument("--mb", type=float, default=1.3)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--reliability", choices=("best_effort", "reliable"), default="best_effort")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node(f"cloud_probe_{args.role}")
    result = publish(node, args) if args.role == "pub" else subscribe(node, args)
    print(json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
