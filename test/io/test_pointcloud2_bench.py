"""The PointCloud2 benchmark runs and reports what ov3d-bench prints (no timing asserted here)."""

from __future__ import annotations

import json

from ov3d_ros.bench import pointcloud2_bench


def test_benchmark_reports_both_timings():
    result = pointcloud2_bench.run(num_points=5_000, repeats=2)
    json.dumps(result)  # printable as JSON
    assert result["num_points"] == 5_000 and result["message_types"] in ("rclpy", "plain")
    assert result["decode_backend"] in ("numpy", "sensor_msgs_py")
    for key in ("decode_300k_xyzrgb_ms", "encode_300k_labeled_ms"):
        assert result[key] > 0
    assert result["target_ms"] == 20.0 and isinstance(result["meets_target"], bool)
