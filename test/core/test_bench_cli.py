"""ov3d-bench plumbing: the densified scan and the pipeline measures' keys (no timing asserted)."""
from __future__ import annotations

import numpy as np

from ov3d_ros.bench import cli as bench_cli
from ov3d_ros.bench.cli import build_segmenter, densify_to, pipeline_bench
from ov3d_ros.io.files import load_scan
from ov3d_ros.io.scan import Scan


def test_densify_keeps_every_real_point_and_adds_midpoints(scannet_npz):
    scan = load_scan(scannet_npz)
    points, colors = densify_to(scan.points, scan.colors, 100_000)
    assert points.shape == (100_000, 3) and colors.shape == (100_000, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(points[: len(scan)], scan.points)
    added = points[len(scan) :]
    from scipy.spatial import cKDTree

    # each added point is the midpoint of a real point and its nearest neighbour: within half the
    # largest nearest-neighbour spacing of the real scan, never off in empty space
    spacing, _ = cKDTree(scan.points).query(scan.points, k=2)
    distance, _ = cKDTree(scan.points).query(added, k=1)
    assert distance.max() <= spacing[:, 1].max() / 2 + 1e-5
    same, same_colors = densify_to(scan.points[:10], scan.colors[:10], 5)
    assert len(same) == 5 and len(same_colors) == 5


def test_pipeline_bench_reports_the_contract_keys(scannet_npz, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_cli, "DEFAULT_CHECKPOINT", tmp_path / "none")  # as long as none ships
    segmenter, weights = build_segmenter(None, "cpu", None)
    assert weights == "random-init (timing only)" and not segmenter.metadata.trained
    scan = load_scan(scannet_npz)
    crop = scan.subset((np.abs(scan.points[:, :2] - np.median(scan.points[:, :2], axis=0)) < 0.8).all(axis=1))
    out = pipeline_bench(segmenter, Scan(crop.points, crop.colors), repeats=1)
    for key in ("end_to_end_100k_s", "end_to_end_cpu_s", "requery_100k_s", "requery_cpu_s", "requery_cached_100k_s"):
        assert isinstance(out[key], float) and out[key] > 0, key
    assert "process.network" in out["end_to_end_stages_s"] and "text" in out["requery_stages_s"]
    assert out["num_points"] == len(crop)
