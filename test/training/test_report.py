"""The accuracy report (ov3d-train report): its numbers are the node's numbers, its affinity metric is exact."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch

from ov3d_ros.core.ggp import GGPConfig
from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
from ov3d_ros.core.types import QuerySet
from ov3d_ros.eval.scannet20 import CLASS_NAMES
from ov3d_ros.io.files import load_scan
from ov3d_ros.io.scan import Scan
from ov3d_training.report import cli
from ov3d_training.report.affinity import cloud_affinity, gravity_aligned
from ov3d_training.report.scannet import class_confusion, confusions, instance_mean, majority_per_voxel, scannet_report


@pytest.fixture(scope="module")
def plumbing_segmenter(random_checkpoint_5cm):
    """Random weights: for checking that the report computes what the node computes, nothing more."""
    return Segmenter.from_checkpoint(
        random_checkpoint_5cm, device="cpu", allow_untrained=True, config=SegmenterConfig(device="cpu")
    )


def test_majority_label_per_voxel_matches_a_loop():
    rng = np.random.default_rng(0)
    point_to_voxel = rng.integers(0, 50, 2000)
    labels = rng.integers(0, 4, 2000)
    labels[point_to_voxel == 7] = 3  # a voxel of one label
    got = majority_per_voxel(point_to_voxel, labels, 52)
    for v in range(52):
        members = labels[point_to_voxel == v]
        if len(members) == 0:
            assert got[v] == 0
        else:
            counts = np.bincount(members)
            assert counts[got[v]] == counts.max(), v
    assert got[7] == 3


def test_class_confusion_gives_each_true_class_the_shares_of_its_points():
    target = np.array([0, 0, 0, 0, 2, 2, -1, -1])
    prediction = np.array(
        [0, 1, 1, 2, 2, 2, 0, -1]
    )  # points of ignored truth (-1) are skipped, whatever they were given
    shares = class_confusion(target, prediction, 3)
    np.testing.assert_allclose(shares[0], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(shares[1], [0.0, 0.0, 0.0])  # absent class: an empty row, not NaN
    np.testing.assert_allclose(shares[2], [0.0, 0.0, 1.0])
    rng = np.random.default_rng(3)
    target, prediction = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    shares = class_confusion(target, prediction, 5)
    for c in range(5):
        for j in range(5):
            assert shares[c, j] == pytest.approx(np.mean(prediction[target == c] == j))


def test_instance_mean_averages_each_object_and_leaves_the_rest():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(40, 3)).astype(np.float32))
    instance = rng.integers(0, 5, 40)  # 0 = no object
    got = instance_mean(logits, instance)
    for v in range(40):
        expected = logits[instance == instance[v]].mean(0) if instance[v] > 0 else logits[v]
        assert torch.allclose(got[v], expected, atol=1e-6), v


def test_instance_mean_is_the_ceiling_when_objects_are_right_on_average():
    """Noise that only averages out within objects: per voxel often wrong, per object right."""
    rng = np.random.default_rng(2)
    instance = np.repeat(np.arange(1, 7), 50)
    truth = (instance - 1) % 3
    logits = np.eye(3, dtype=np.float32)[truth] + rng.normal(0.0, 0.9, (300, 3)).astype(np.float32)
    per_voxel = (logits.argmax(1) == truth).mean()
    pooled = instance_mean(torch.from_numpy(logits), instance).argmax(1).numpy()
    assert per_voxel < 0.8 and (pooled == truth).all()


def _table_scene(rng, tilt_deg: float = 25.0) -> Scan:
    """A 1.2 x 0.8 m table (labels 1), a box standing on it (10) and a box floating 0.5 m above (11),
    seen by a camera at the origin looking down the tilted optical axis."""
    table = np.c_[rng.uniform(-0.6, 0.6, 6000), rng.uniform(-0.4, 0.4, 6000), np.zeros(6000)]

    def box(center, size, n):
        return center + rng.uniform(-0.5, 0.5, (n, 3)) * size

    standing = box(np.array([-0.25, 0.0, 0.1]), np.array([0.2, 0.2, 0.2]), 3000)
    floating = box(np.array([0.3, 0.0, 0.6]), np.array([0.25, 0.25, 0.25]), 3000)
    points = np.concatenate([table, standing, floating])
    labels = np.r_[np.full(6000, 1), np.full(3000, 10), np.full(3000, 11)]
    a = np.deg2rad(tilt_deg)
    rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    camera = (points - [0.0, 0.0, 1.5]) @ rotation.T  # the table 1.5 m below the camera, then tilted
    colors = np.where(labels[:, None] == 1, [120, 90, 60], [200, 30, 30]).astype(np.uint8)
    return Scan(points=camera.astype(np.float32), colors=colors, instances=labels.astype(np.int64))


def test_gravity_alignment_levels_the_table_with_the_camera_above():
    scan = gravity_aligned(_table_scene(np.random.default_rng(1)))
    table = scan.points[scan.instances == 1]
    assert np.abs(table[:, 2]).max() < 1e-4  # the plane is z = 0
    assert scan.points[scan.instances == 11][:, 2].min() > 0.4  # objects above it, not below
    assert scan.points[scan.instances == 10][:, 2].max() == pytest.approx(0.2, abs=0.01)


def test_inside_share_is_one_for_an_isolated_object_and_below_for_a_touching_one(plumbing_segmenter):
    scan = gravity_aligned(_table_scene(np.random.default_rng(2)))
    result = cloud_affinity(plumbing_segmenter, scan, "synthetic")
    assert result.objects == 2
    for variant, share in result.inside_one_step.items():
        assert 0.0 < share <= 1.0 + 1e-6, variant
        assert result.inside_t_steps[variant] <= share + 1e-6, variant  # mass only leaks further with T
    # the floating box has every neighbour inside, the standing one shares its base with the table:
    # per object, recompute with one object at a time
    only_floating = Scan(
        points=scan.points, colors=scan.colors, instances=np.where(scan.instances == 10, 1, scan.instances)
    )
    floating = cloud_affinity(plumbing_segmenter, only_floating, "floating only")
    assert floating.objects == 1
    for variant in floating.inside_one_step:
        assert floating.inside_one_step[variant] == pytest.approx(1.0, abs=1e-5), variant
        assert floating.inside_t_steps[variant] == pytest.approx(1.0, abs=1e-5), variant
    assert min(result.inside_t_steps.values()) < 0.999  # the standing box leaks into the table
    # a variant on coarse-to-fine cells is measured on its cells and on voxels, under its own setting
    cells = {"ggp_learned": GGPConfig(k=8, tau=0.1, iterations=4, coarsen=2)}
    both = cloud_affinity(plumbing_segmenter, scan, "synthetic", settings=cells)
    assert set(both.inside_one_step) == set(result.inside_one_step) | {"ggp_learned_voxels"}
    assert both.name == result.name == "synthetic"  # the cloud's name, whatever variants were measured
    on_voxels = cloud_affinity(
        plumbing_segmenter, scan, "synthetic", settings={"ggp_learned": replace(cells["ggp_learned"], coarsen=1)}
    )
    assert both.inside_one_step["ggp_learned_voxels"] == on_voxels.inside_one_step["ggp_learned"]
    assert both.inside_t_steps["ggp_learned_voxels"] == on_voxels.inside_t_steps["ggp_learned"]


def test_scannet_report_equals_the_segmenters_own_pooling(plumbing_segmenter, scannet_npz):
    scan = load_scan(scannet_npz)
    piece = scan.subset(scan.points[:, 0] < np.percentile(scan.points[:, 0], 40))
    embeddings = plumbing_segmenter.text_encoder.encode(list(CLASS_NAMES))
    shipped = plumbing_segmenter.config.ggp
    report = scannet_report(plumbing_segmenter, piece, embeddings, None, ks=(8,), iterations=(0, 4))
    rows = {(r["variant"], r["k"], r["T"]): r for r in report.sweep}
    assert ("ggp_learned", shipped.k, shipped.iterations) in rows and ("ggp_distance", 8, 4) in rows
    assert rows[("ggp_learned", shipped.k, shipped.iterations)]["miou"] == report.variants["ggp_learned"].miou
    assert report.settings["ggp_geometric"] == GGPConfig(k=shipped.k, tau=shipped.tau, iterations=shipped.iterations)
    for variant in ("ggp_uniform", "ggp_distance", "ggp_geometric", "ggp_learned"):
        assert rows[(variant, 8, 0)]["miou"] == report.variants["student"].miou  # T = 0 is no pooling
    assert set(report.bounds) == {"student_instance_mean"}  # no teacher given: no teacher bounds
    # the confusion rows: every class present, its own share = the share of its points given it
    table = confusions(report)
    assert set(table) == {"ggp_learned", "student_instance_mean"}  # no teacher: no teacher row
    for variant, rows in table.items():
        assert set(rows) == {CLASS_NAMES[c] for c in np.unique(report.target) if c >= 0}
        for name, given in rows.items():
            c = CLASS_NAMES.index(name)
            own = 100.0 * np.mean(report.predictions[variant][report.target == c] == c)
            assert given.get(name, 0.0) == pytest.approx(own, abs=0.5 if own >= 0.5 else 0.51), (variant, name)
            assert list(given.values()) == sorted(given.values(), reverse=True)
            assert 100.0 - 0.5 * len(CLASS_NAMES) <= sum(given.values()) <= 100.0 + 0.05 * len(given)
    # a "teacher" whose logits are the student's own: its bounds must be the student's numbers
    processed = plumbing_segmenter.process(piece)
    text = torch.nn.functional.normalize(torch.from_numpy(np.asarray(embeddings, np.float32)), dim=1)
    with torch.inference_mode():
        own = processed.semantic.logits(text).float()
    mirrored = scannet_report(plumbing_segmenter, piece, embeddings, own, ks=(8,), iterations=(0,))
    assert mirrored.variants["teacher"] == mirrored.variants["student"]
    assert mirrored.bounds["teacher_instance_mean"] == mirrored.bounds["student_instance_mean"]
    mirrored_table = confusions(mirrored)
    assert mirrored_table["teacher_instance_mean"] == mirrored_table["student_instance_mean"]
    for variant in ("ggp_uniform", "ggp_distance", "ggp_geometric", "ggp_learned"):
        assert mirrored.bounds[f"teacher_{variant}"] == mirrored.variants[variant], variant
    # what the node runs: the Segmenter's closed-set decision with its configured GGP
    queries = QuerySet(positives=tuple(CLASS_NAMES), background=False)
    for pooling, variant in ((True, "ggp_learned"), (False, "student")):
        decision, _ = plumbing_segmenter.voxel_decision(processed, queries, pooling=pooling)
        node = (decision.semantic.cpu().numpy().astype(np.int64) - 1)[processed.voxels.point_to_voxel]
        assert np.mean(node == report.predictions[variant]) > 0.999, variant  # float ties aside


def test_each_pooling_variant_is_scored_at_its_own_calibrated_setting(
    plumbing_segmenter, random_checkpoint_5cm, scannet_npz
):
    scan = load_scan(scannet_npz)
    piece = scan.subset(scan.points[:, 0] < np.percentile(scan.points[:, 0], 25))
    embeddings = plumbing_segmenter.text_encoder.encode(list(CLASS_NAMES))
    settings = {
        "ggp_learned": GGPConfig(k=8, tau=0.2, iterations=6, coarsen=3, centering=0.5),  # cells, centred field
        "ggp_distance": GGPConfig(k=8, iterations=2, weights="distance"),
    }
    report = scannet_report(
        plumbing_segmenter, piece, embeddings, None, ks=(8,), iterations=(0,), settings=settings, unpooled_centering=1.0
    )
    assert report.settings["ggp_learned"] == settings["ggp_learned"]
    assert (
        report.settings["ggp_uniform"].iterations == plumbing_segmenter.config.ggp.iterations
    )  # none given: the segmenter's
    rows = {(r["variant"], r["k"], r["coarsen"], r["T"]): r for r in report.sweep}
    for variant, config in settings.items():  # the sweep passes through the setting, with its tau and cells
        assert rows[(variant, config.k, config.coarsen, config.iterations)]["miou"] == report.variants[variant].miou, (
            variant
        )
        assert rows[(variant, config.k, config.coarsen, config.iterations)]["tau"] == config.tau
    assert ("ggp_learned", 8, 1, 6) in rows and ("ggp_distance", 8, 3, 2) not in rows  # coarse cells: plain swept too
    # the learned row is what the segmenter computes when it runs at that setting
    at_setting = Segmenter.from_checkpoint(
        random_checkpoint_5cm,
        device="cpu",
        allow_untrained=True,
        config=SegmenterConfig(device="cpu", ggp=settings["ggp_learned"]),
    )
    processed = at_setting.process(piece)
    decision, _ = at_setting.voxel_decision(
        processed, QuerySet(positives=tuple(CLASS_NAMES), background=False), pooling=True
    )
    node = (decision.semantic.cpu().numpy().astype(np.int64) - 1)[processed.voxels.point_to_voxel]
    assert np.mean(node == report.predictions["ggp_learned"]) > 0.999
    assert rows[("ggp_learned", 8, 3, 6)]["centering"] == 0.5 and rows[("ggp_distance", 8, 1, 2)]["centering"] == 0.0
    # the centred unpooled row is the segmenter's own field at that centering, without pooling
    centered = at_setting.process(piece, ggp=replace(at_setting.config.ggp, centering=1.0))
    decision, _ = at_setting.voxel_decision(
        centered, QuerySet(positives=tuple(CLASS_NAMES), background=False), pooling=False
    )
    node = (decision.semantic.cpu().numpy().astype(np.int64) - 1)[centered.voxels.point_to_voxel]
    assert np.mean(node == report.predictions["student_centered"]) > 0.999
    assert np.mean(report.predictions["student_centered"] != report.predictions["student"]) > 0.01  # it changed labels


def test_report_cli_refuses_an_untrained_student(random_checkpoint_5cm, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    code = cli.main(parser.parse_args(["--out", str(tmp_path / "r"), "--student", str(random_checkpoint_5cm)]))
    assert code == 2 and "untrained" in capsys.readouterr().err.lower()
