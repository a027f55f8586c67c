"""ov3d-bench plumbing: the densified scan, the pipeline measures' keys and the GGP part's (no timing asserted)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_ggp_part_runs_at_the_segmenters_setting_and_reports_both_ratios(scannet_npz, monkeypatch):
    """ov3d-bench times GGP at the setting its segmenter runs (the packaged model's calibrated one)
    and copies both ratios against GeoPurify's formulation to the top level (benches stubbed)."""
    from ov3d_ros.bench.ggp_bench import shipped_config

    calls = {}

    def bench(module, **kwargs):
        calls[module] = kwargs
        if module == "ov3d_ros.bench.ggp_bench":
            ratios = {"ggp_speedup_vs_reference_paper": 12.5, "ggp_speedup_vs_reference_shipped": 31.0}
            return {**ratios, "reference_outputs_equal": True}
        return {}

    monkeypatch.setattr(bench_cli, "_optional", bench)
    monkeypatch.setattr(bench_cli, "pipeline_bench", lambda segmenter, scan, repeats: {})
    out = bench_cli.run(scannet_npz, device="cpu", repeats=1)
    assert calls["ov3d_ros.bench.ggp_bench"]["config"] == shipped_config()
    assert calls["ov3d_ros.bench.ggp_bench"]["reference"] is True
    assert out["ggp_speedup_vs_reference_paper"] == 12.5 and out["ggp_speedup_vs_reference_shipped"] == 31.0
    assert out["ggp"]["reference_outputs_equal"] and out["ggp"]["k"] == shipped_config().k
    assert "ggp_speedup_vs_reference" not in out  # the retired ratio against the float64 dense reference


def test_help_names_the_ggp_ratio_keys(capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ggp_speedup_vs_reference_paper" in text and "ggp_speedup_vs_reference_shipped" in text
