"""ov3d-train calibrate-query: the search agrees with ov3d-eval's single mode, --install records the
rule, and the evaluation scan and the model's training scans are refused."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from ov3d_ros.core.checkpoint import read_metadata
from ov3d_ros.core.query import QueryRule
from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT, Segmenter
from ov3d_ros.eval import cli as eval_cli
from ov3d_ros.io.files import load_scan, save_scan
from ov3d_training.calibrate.query import cli
from ov3d_training.calibrate.query.search import calibrate_query_rule, rule_grid


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    base = parser.parse_args(["--data", "x", "--no-progress", "--device", "cpu"])
    return argparse.Namespace(**{**vars(base), **overrides})


@pytest.fixture(scope="module")
def room_piece(shared_data, tmp_path_factory):
    """A 2 m x 2 m piece of a real ScanNet room held out from the shipped model (scene0005: a v4
    validation room), not the evaluation scan."""
    scan = load_scan(shared_data / "scannet_rooms" / "scene0005_00.npz")
    center = np.median(scan.points[:, :2], axis=0)
    piece = scan.subset((np.abs(scan.points[:, :2] - center) < 1.0).all(axis=1))
    path = tmp_path_factory.mktemp("held_out") / "scene0005_00.npz"
    save_scan(piece, path)
    return path, piece


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    copy = tmp_path_factory.mktemp("model") / "student"
    shutil.copytree(DEFAULT_CHECKPOINT, copy)
    return copy


def test_grid_keeps_alias_below_exclude():
    assert rule_grid((0.7, 0.8), (None, 0.6, 0.75)) == [(0.7, None), (0.7, 0.6), (0.8, None), (0.8, 0.6), (0.8, 0.75)]


def test_search_agrees_with_eval_single_mode(room_piece):
    path, piece = room_piece
    segmenter = Segmenter.from_checkpoint(None, device="cpu")
    calibration = calibrate_query_rule(segmenter, [(path.name, piece)], (0.8, 1.01), (None, 0.6), (0.0, 0.05))
    assert len(calibration.table) == 4 * 2 and calibration.classes
    best = calibration.best
    assert best["miou"] == max(row["miou"] for row in calibration.table)
    # every row is what ov3d-eval --mode single measures with that rule
    for row in calibration.table[::3]:
        rule = QueryRule(row["exclude"], row["alias"], row["margin"])
        result, _ = eval_cli.evaluate_dataset(segmenter, [(path.name, piece)], mode="single", rule=rule)
        assert result["single"]["miou"] == pytest.approx(row["miou"], abs=0.011), row
    off, _ = eval_cli.evaluate_dataset(segmenter, [(path.name, piece)], mode="single", vocabulary=False)
    assert off["single"]["miou"] == pytest.approx(calibration.vocabulary_off["miou"], abs=0.011)
    assert off["single"]["closed_miou_same_classes"] == pytest.approx(calibration.closed_miou, abs=0.011)


def test_install_records_the_rule_the_node_then_uses(room_piece, model_copy, capsys):
    path, _ = room_piece
    args = _args(
        student=model_copy,
        data=[str(path)],
        out=model_copy,
        exclude=[0.8],
        alias=[None, 0.6],
        margin=[0.0, 0.05],
        install=True,
    )
    assert cli.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    recorded = read_metadata(model_copy).query
    assert {k: recorded[k] for k in ("exclude", "alias", "margin")} == {
        k: printed["best"][k] for k in ("exclude", "alias", "margin")
    }
    assert recorded["calibration"]["scans"] == [path.name] and recorded["calibration"]["vocabulary"]["names"] > 200
    table = json.loads((model_copy / "query_calibration.json").read_text())
    assert len(table["table"]) == 4
    segmenter = Segmenter.from_checkpoint(model_copy, device="cpu")
    assert segmenter.query_rule_calibrated and segmenter.config.query_rule == QueryRule.from_record(recorded)


def test_the_evaluation_scan_is_refused(scannet_npz, tmp_path, capsys):
    copy = tmp_path / "renamed.npz"
    shutil.copyfile(scannet_npz, copy)
    for data in ([str(scannet_npz)], [str(scannet_npz.parent)], [str(copy)]):
        assert cli.main(_args(data=data, out=tmp_path)) == 2
        assert "the evaluation scan never chooses settings" in capsys.readouterr().err
    assert not (tmp_path / "query_calibration.json").exists()


def test_training_scans_are_refused(room_piece, tmp_path, capsys):
    path, _ = room_piece
    model_copy = tmp_path / "student"
    shutil.copytree(DEFAULT_CHECKPOINT, model_copy)
    training = tmp_path / "runs" / "real" / "train"  # where ov3d-train scannet-rooms copies training scans
    training.mkdir(parents=True)
    shutil.copyfile(path, training / path.name)
    meta = json.loads((model_copy / "model.json").read_text())
    meta["training_data"] = {"sources": [f"{training}@3"], "teacher": {"training_data": []}}
    (model_copy / "model.json").write_text(json.dumps(meta))
    assert cli.main(_args(student=model_copy, data=[str(path)], out=tmp_path)) == 2
    assert "are the student's training data" in capsys.readouterr().err
