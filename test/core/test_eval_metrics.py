"""Evaluation: metrics against a hand-computed confusion matrix, ScanNet-20 mapping, ov3d-eval CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ov3d_ros.core import segmenter as segmenter_module
from ov3d_ros.eval import cli
from ov3d_ros.eval.metrics import confusion_matrix, evaluate, restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_NAMES, FOREGROUND_EXCLUDED, nyu40_to_class_index
from ov3d_ros.io.files import load_scan, save_scan

NAMES = ("A", "B", "C", "D")
#                 labelled ........................  ignored
GT = np.array([0, 0, 0, 1, 1, 1, 2, -1, -1])
PRED = np.array([0, 1, -1, 1, 1, 3, 0, 2, 0])  # -1 = matched nothing


def test_confusion_matrix_by_hand():
    expected = np.array(
        [
            # A  B  C  D  none
            [1, 1, 0, 0, 1],  # A: one right, one as B, one missed
            [0, 2, 0, 1, 0],  # B: two right, one as D
            [1, 0, 0, 0, 0],  # C: taken for A
            [0, 0, 0, 0, 0],  # D: absent from the ground truth
        ]
    )
    np.testing.assert_array_equal(confusion_matrix(GT, PRED, 4), expected)


def test_iou_and_accuracy_by_hand():
    m = evaluate(GT, PRED, NAMES)
    # A: TP 1, GT 3, predicted 2 -> 1 / (3 + 2 - 1);  B: 2 / (3 + 3 - 2);  C: 0 / 1;  D: absent
    assert m.per_class_iou == {"A": pytest.approx(0.25), "B": pytest.approx(0.5), "C": 0.0, "D": None}
    assert m.per_class_acc == {"A": pytest.approx(1 / 3), "B": pytest.approx(2 / 3), "C": 0.0, "D": None}
    assert m.miou == pytest.approx(0.75 / 3)
    assert m.macc == pytest.approx(1 / 3)
    assert m.points == 7


def test_perfect_prediction_and_input_errors():
    m = evaluate(GT, np.where(GT >= 0, GT, 3), NAMES)  # ignored points may be predicted anything
    assert m.miou == 1.0 and m.macc == 1.0
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(GT, PRED[:-1], 4)
    with pytest.raises(ValueError, match="ground-truth ids"):
        confusion_matrix(np.array([4]), np.array([0]), 4)
    with pytest.raises(ValueError, match="predicted ids"):
        confusion_matrix(np.array([0]), np.array([-2]), 4)


def test_foreground_restriction_drops_classes_from_ground_truth():
    gt, names = restrict_classes(GT, NAMES, ("A",))
    assert names == ("B", "C", "D")
    np.testing.assert_array_equal(gt, [-1, -1, -1, 0, 0, 0, 1, -1, -1])
    with pytest.raises(ValueError, match="not in the class list"):
        restrict_classes(GT, NAMES, ("wall",))


def test_scannet20_mapping():
    assert len(CLASS_NAMES) == 20 and set(FOREGROUND_EXCLUDED) <= set(CLASS_NAMES)
    nyu = np.array([0, 1, 2, 13, 14, 39, 40, 255, 36])
    np.testing.assert_array_equal(nyu40_to_class_index(nyu), [-1, 0, 1, -1, 12, 19, -1, -1, 18])


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def small_scene(scannet_npz, tmp_path_factory):
    """A labelled 2 m x 2 m piece of the real scan, saved in the project's npz layout."""
    scan = load_scan(scannet_npz)
    center = np.median(scan.points[:, :2], axis=0)
    piece = scan.subset((np.abs(scan.points[:, :2] - center) < 1.0).all(axis=1))
    path = tmp_path_factory.mktemp("scene") / "piece.npz"
    save_scan(piece, path)
    return path, piece


def test_eval_cli_prints_one_json_object_and_renders(small_scene, random_checkpoint, tmp_path, capsys):
    scene, piece = small_scene
    png = tmp_path / "compare.png"
    args = ["--scene", str(scene), "--checkpoint", str(random_checkpoint), "--json", "--device", "cpu"]
    assert cli.main([*args, "--allow-untrained", "--render", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("miou", "macc", "fmiou", "fmacc", "miou_raw", "fmiou_raw", "per_class_iou", "points", "seconds"):
        assert key in out, key
    assert out["points"] == len(piece) and out["weights"].startswith("untrained")
    assert set(out["per_class_iou"]) == set(CLASS_NAMES)
    for value in (out["miou"], out["macc"], out["fmiou"], out["miou_raw"]):
        assert 0.0 <= value <= 100.0
    present = {CLASS_NAMES[i] for i in np.unique(nyu40_to_class_index(piece.labels)) if i >= 0}
    assert set(out["classes_present"]) == present
    assert png.is_file() and png.stat().st_size > 10_000


def test_eval_cli_refuses_untrained_and_missing_models(small_scene, random_checkpoint, monkeypatch, capsys):
    scene, _ = small_scene
    assert cli.main(["--scene", str(scene), "--checkpoint", str(random_checkpoint), "--json"]) == 2
    assert "UntrainedCheckpointError" in json.loads(capsys.readouterr().out)["error"]
    monkeypatch.setattr(segmenter_module, "DEFAULT_CHECKPOINT", scene.parent / "no-default")
    assert cli.main(["--scene", str(scene), "--json"]) == 2
    assert "no trained model ships" in json.loads(capsys.readouterr().out)["error"]


def test_eval_cli_refuses_a_scene_without_labels(random_checkpoint, small_scene, tmp_path, capsys):
    _, piece = small_scene
    unlabeled = tmp_path / "unlabelled.npz"
    save_scan(replace(piece, labels=None), unlabeled)
    args = ["--scene", str(unlabeled), "--checkpoint", str(random_checkpoint), "--json", "--allow-untrained"]
    assert cli.main([*args, "--device", "cpu"]) == 2
    assert "no per-point semantic labels" in json.loads(capsys.readouterr().out)["error"]
