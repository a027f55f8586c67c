"""PointCloud2 decode / encode timings for ``ov3d-bench`` (a dict, printed as JSON by the CLI).

* ``decode_300k_xyzrgb_ms``: :func:`cloud_to_scan` of an x, y, z, rgb (float32-packed) cloud,
  NaN check included, into a Scan (points float32, colours uint8).
* ``encode_300k_labeled_ms``: :func:`make_labeled_cloud` (x, y, z, rgb, label, score) into a
  message ready to publish.

Both run on rclpy's message class when importable (what the node handles), else on the plain
dataclass; the result says which. Target on the 2-core CI machine: <= 20 ms each.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ov3d_ros.io.messages import default_message_types
from ov3d_ros.io.pointcloud2 import cloud_to_scan, make_labeled_cloud, scan_to_cloud, sensor_msgs_py_available
from ov3d_ros.io.scan import Scan, pack_label

TARGET_MS = 20.0


def _timings_ms(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up: imports, allocator, caches
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def run(num_points: int = 300_000, repeats: int = 20, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    types = default_message_types()
    points = rng.uniform(-5.0, 5.0, size=(num_points, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(num_points, 3), dtype=np.uint8)
    label = pack_label(rng.integers(0, 20, num_points), rng.integers(0, 500, num_points))
    score = rng.random(num_points, dtype=np.float32)

    xyzrgb = scan_to_cloud(Scan(points, colors), types)
    decode = _timings_ms(lambda: cloud_to_scan(xyzrgb), repeats)
    encode = _timings_ms(lambda: make_labeled_cloud(points, colors, label, score, "map", 1, types), repeats)

    decoded = cloud_to_scan(xyzrgb)  # the timed call must also be right
    assert np.array_equal(decoded.points, points) and np.array_equal(decoded.colors, colors)

    decode_ms = statistics.median(decode)
    encode_ms = statistics.median(encode)
    return {
        "num_points": num_points,
        "repeats": repeats,
        "message_types": types.name,
        "decode_backend": "sensor_msgs_py" if types.name == "rclpy" and sensor_msgs_py_available() else "numpy",
        "decode_300k_xyzrgb_ms": round(decode_ms, 3),
        "decode_300k_xyzrgb_min_ms": round(min(decode), 3),
        "encode_300k_labeled_ms": round(encode_ms, 3),
        "encode_300k_labeled_min_ms": round(min(encode), 3),
        "target_ms": TARGET_MS,
        "meets_target": bool(decode_ms <= TARGET_MS and encode_ms <= TARGET_MS),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
