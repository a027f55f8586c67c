"""``ov3d-segment --demo``: play the packaged recording into the node and show what it found.

The recording's clouds are published on the node's own input topic (real DDS, as a robot's
mapper would), one at a time, each waiting for its labelled cloud, so the demo drops nothing.
Then: a per-query object summary on stdout and a PNG of the last labelled cloud. With
``--demo-keep-running`` the recording loops (about 1 Hz) so RViz keeps showing results.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from ov3d_ros.core.types import SegmentationResult
from ov3d_ros.io.bags import read_annotations, read_bag
from ov3d_ros.io.messages import rclpy_message_types
from ov3d_ros.io.pointcloud2 import scan_to_cloud
from ov3d_ros.io.scan import Scan
from ov3d_ros.node.palette import colorize
from ov3d_ros.node.parameters import SPECS
from ov3d_ros.node.render import render_labeled_cloud

DEMO_BAG = Path(__file__).resolve().parents[1] / "data" / "demo_scene"
# Used when the recording names no object categories and the user left `queries` at its default.
DEMO_QUERIES = "chair; table; sofa; bookshelf; bed; cabinet"
# structure and catch-all categories make poor demo queries
STRUCTURE = {"wall", "floor", "ceiling", "door", "window", "other furniture", "otherfurniture", "other", "object"}
MAX_DEMO_QUERIES = 8
FRAME_TIMEOUT_S = 600.0
MAX_LISTED_PER_QUERY = 10


def demo_queries(annotations: dict | None, fallback: str = DEMO_QUERIES) -> str:
    """The recording's most frequent object categories (from annotations.json), else ``fallback``."""
    counts: Counter[str] = Counter()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("category", "class", "class_name") and isinstance(item, str) and item.strip():
                    counts[" ".join(item.split()).lower()] += 1
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(annotations or {})
    names = [name for name, _ in counts.most_common() if name not in STRUCTURE][:MAX_DEMO_QUERIES]
    return "; ".join(names) if names else fallback


def summary_lines(result: SegmentationResult) -> list[str]:
    """Per query: how many objects, and each one's centre, size, score and point count."""
    lines = []
    for index, query in enumerate(result.queries.positives, start=1):
        found = [o for o in result.objects if o.semantic_id == index]
        lines.append(f"{query}: {len(found)} object{'s' if len(found) != 1 else ''}")
        for obj in sorted(found, key=lambda o: -o.score)[:MAX_LISTED_PER_QUERY]:
            c, s = obj.center, obj.size
            lines.append(
                f"    #{obj.instance_id:<3d} score {obj.score:.2f}  centre ({c[0]:6.2f}, {c[1]:6.2f}, {c[2]:5.2f}) m  "
                f"size {s[0]:.2f} x {s[1]:.2f} x {s[2]:.2f} m  {obj.num_points} points"
            )
        if len(found) > MAX_LISTED_PER_QUERY:
            lines.append(f"    ... and {len(found) - MAX_LISTED_PER_QUERY} more (lower scores)")
    return lines


def _publishable(scan: Scan) -> Scan:
    """What a robot would send: geometry, colour, normals, lifted features; never ground truth."""
    return replace(scan, labels=None, instances=None, meta={})


def _wait_for_result(executor: Any, node: Any, count_before: int, stamp_ns: int, timeout_s: float) -> bool:
    problems_before = node.health.rejected + node.health.failures
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        last = node.last_result
        if node.results_published > count_before and last is not None and last[1].stamp_ns == stamp_ns:
            return True
        if node.health.rejected + node.health.failures > problems_before:
            return False
    return False


def run_demo(
    node: Any,
    *,
    bag: str | Path | None = None,
    output: str | Path = "ov3d_demo.png",
    keep_running: bool = False,
    out: Any = sys.stdout,
) -> int:
    """Play ``bag`` (default: the packaged recording) into ``node``; 0 on success."""
    path = Path(bag) if bag else DEMO_BAG
    if not (path / "metadata.yaml").is_file():
        print(f"[ov3d-segment --demo] no recording at {path} (a rosbag2 directory with metadata.yaml)", file=sys.stderr)
        return 1
    scans = [_publishable(frame.scan) for frame in read_bag(path)]
    if not scans:
        print(f"[ov3d-segment --demo] {path} holds no PointCloud2 messages", file=sys.stderr)
        return 1
    if node.settings.queries == SPECS["queries"].default:
        wanted = demo_queries(read_annotations(path))
        results = node.set_parameters([Parameter("queries", value=wanted)])
        if not results[0].successful:
            print(f"[ov3d-segment --demo] cannot use queries {wanted!r}: {results[0].reason}", file=sys.stderr)
            return 1
    print(f"demo: {len(scans)} cloud(s) from {path}; queries: {node.settings.queries}", file=out, flush=True)

    player = rclpy.create_node("ov3d_demo_player", context=node.context)
    publisher = player.create_publisher(
        PointCloud2, node.cloud_sub.resolved_topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    )
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    executor.add_node(player)
    types = rclpy_message_types()
    try:
        deadline = time.monotonic() + 30.0
        while publisher.get_subscription_count() == 0:
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() > deadline:
                print("[ov3d-segment --demo] the node's input was not discovered within 30 s", file=sys.stderr)
                return 1
        code = _play(executor, node, publisher, scans, types, out)
        if code:
            return code
        result, scan, _ = node.last_result
        print("\n".join(summary_lines(result)), file=out, flush=True)
        colors = colorize(result.semantic, len(result.queries.positives), scan.colors)
        title = f"{path.name}: {len(scan)} points, queries: {'; '.join(result.queries.positives)}"
        if not node.segmenter.metadata.trained:
            title += "  [UNTRAINED random weights: labels mean nothing]"
        image = render_labeled_cloud(scan.points, colors, result.objects, result.queries.positives, output, title=title)
        print(f"labelled cloud rendered to {image}", file=out, flush=True)
        while keep_running and rclpy.ok(context=node.context):
            for frame in scans:
                publisher.publish(scan_to_cloud(replace(frame, stamp_ns=node.get_clock().now().nanoseconds), types))
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    executor.spin_once(timeout_sec=0.05)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        # shutting down: a second Ctrl-C (terminal and launch both signal the node) would abort
        # the node mid-destruction
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor.shutdown()
        player.destroy_node()
        node.destroy_node()


def _play(executor: Any, node: Any, publisher: Any, scans: Iterable[Scan], types: Any, out: Any) -> int:
    for index, scan in enumerate(scans, start=1):
        before = node.results_published
        publisher.publish(scan_to_cloud(scan, types))
        start = time.monotonic()
        if not _wait_for_result(executor, node, before, scan.stamp_ns, FRAME_TIMEOUT_S):
            problem = node.health.last_problem or f"no result within {FRAME_TIMEOUT_S:.0f} s"
            print(f"[ov3d-segment --demo] cloud {index}: {problem}", file=sys.stderr)
            return 1
        result = node.last_result[0]
        print(
            f"cloud {index}: {len(scan)} points, {len(result.objects)} objects, {time.monotonic() - start:.2f} s",
            file=out,
            flush=True,
        )
    return 0
