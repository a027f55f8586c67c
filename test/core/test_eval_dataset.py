"""ov3d-eval over several scans (summed confusion), folders, single-query mode and synonyms tables.

The single-query and synonyms cases use hand-made scans whose per-point semantic features are the
text embeddings of chosen names (the segmenter's input-features path, pooling off, one point per
voxel), so which points answer a query is known exactly and the IoUs are computed by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ov3d_ros.core.checkpoint import load_checkpoint
from ov3d_ros.core.query import QueryRule
from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
from ov3d_ros.core.text import load_text_encoder
from ov3d_ros.eval import cli
from ov3d_ros.eval.closed import closed_metrics
from ov3d_ros.eval.metrics import evaluate, restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_NAMES, FOREGROUND_EXCLUDED
from ov3d_ros.eval.single import node_default_query
from ov3d_ros.eval.synonyms import BUILTIN_SYNONYMS, SynonymsError, load_synonyms
from ov3d_ros.io.files import load_scan, save_scan
from ov3d_ros.io.scan import Scan

NYU40 = {"chair": 5, "sofa": 6, "table": 7, "refrigerator": 24}


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm-l6-v2")


@pytest.fixture(scope="module")
def two_pieces(scannet_npz, tmp_path_factory):
    """Two labelled 1.6 m x 1.6 m pieces of the real scan, saved in a folder (plus a non-scan file)."""
    scan = load_scan(scannet_npz)
    folder = tmp_path_factory.mktemp("pieces")
    center = np.median(scan.points[:, :2], axis=0)
    pieces = []
    for i, offset in enumerate(([-0.8, 0.0], [0.8, 0.0])):
        inside = (np.abs(scan.points[:, :2] - (center + offset)) < 0.8).all(axis=1)
        piece = scan.subset(inside)
        save_scan(piece, folder / f"piece{i}.npz")
        pieces.append(piece)
    (folder / "notes.txt").write_text("not a scan")
    return folder, pieces


@pytest.fixture(scope="module")
def trained():
    """The packaged model (real semantics), on CPU."""
    return Segmenter.from_checkpoint(None, device="cpu")


# ------------------------------------------------------------------------------- several scans
def test_dataset_metrics_are_those_of_the_concatenated_scans(trained, two_pieces):
    _, pieces = two_pieces
    scenes = [(f"piece{i}", piece) for i, piece in enumerate(pieces)]
    result, arrays = cli.evaluate_dataset(trained, scenes, keep_arrays=True)
    gt = np.concatenate([a["gt"] for a in arrays])
    pred = np.concatenate([a["pred"] for a in arrays])
    whole = evaluate(gt, pred, CLASS_NAMES)
    assert result["miou"] == pytest.approx(round(100 * whole.miou, 2))
    assert result["macc"] == pytest.approx(round(100 * whole.macc, 2))
    for name, iou in whole.per_class_iou.items():
        assert result["per_class_iou"][name] == (None if iou is None else pytest.approx(round(100 * iou, 2)))
    # the foreground metrics too, from the foreground confusions summed
    summed = {k: arrays[0]["confusions"][k] + arrays[1]["confusions"][k] for k in arrays[0]["confusions"]}
    _, fg_names = restrict_classes(gt, CLASS_NAMES, FOREGROUND_EXCLUDED)
    assert closed_metrics(summed, CLASS_NAMES, fg_names)["fmiou"] == result["fmiou"]
    # each scan's own result is its own metrics, and the dataset is not their mean
    for scene, scene_arrays in zip(result["scenes"], arrays):
        own = evaluate(scene_arrays["gt"], scene_arrays["pred"], CLASS_NAMES)
        assert scene["miou"] == pytest.approx(round(100 * own.miou, 2))
    assert result["dataset"]["miou"] == result["miou"] and result["dataset"]["num_scenes"] == 2
    assert result["points"] == sum(len(p) for p in pieces)
    assert result["labeled_points"] == int((gt >= 0).sum())


def test_folder_input_and_single_scan_layout(two_pieces, capsys):
    folder, pieces = two_pieces
    assert cli.main(["--scene", str(folder), "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["scene"] for s in out["scenes"]] == [str(folder / "piece0.npz"), str(folder / "piece1.npz")]
    assert out["dataset"]["num_scenes"] == 2 and out["points"] == sum(len(p) for p in pieces)
    for key in ("miou", "macc", "fmiou", "fmacc", "miou_raw", "macc_raw", "fmiou_raw", "fmacc_raw", "per_class_iou"):
        assert out[key] == out["dataset"][key], key
    # one scan: the old top-level keys, that scan's values, and a one-entry scenes list
    assert cli.main(["--scene", str(folder / "piece1.npz"), "--json", "--device", "cpu"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["scene"] == str(folder / "piece1.npz") and len(one["scenes"]) == 1
    assert one["miou"] == one["scenes"][0]["miou"] == out["scenes"][1]["miou"]
    assert "process_timings" in one
    empty = folder / "empty"
    empty.mkdir()
    assert cli.main(["--scene", str(empty), "--json"]) == 2
    assert "no .ply/.pcd/.npz scans" in json.loads(capsys.readouterr().out)["error"]


# --------------------------------------------------------------------------- single-query mode
def feature_scan(encoder, regions: list[tuple[float, float, str]], truth: list[tuple[float, float, str]]) -> Scan:
    """Points on a 10 cm grid over x in [0, 3), y in [0, 1); features: the embedding of the name of
    the region holding each point's x; labels: the NYU40 id of the ``truth`` name at its x (0 elsewhere)."""
    x, y = np.meshgrid(np.arange(0.05, 3.0, 0.1), np.arange(0.05, 1.0, 0.1), indexing="ij")
    points = np.c_[x.ravel(), y.ravel(), np.zeros(x.size)].astype(np.float32)
    features = np.zeros((len(points), 384), np.float32)
    labels = np.zeros(len(points), np.int32)
    for low, high, name in regions:
        features[(points[:, 0] >= low) & (points[:, 0] < high)] = encoder.encode([name])[0]
    for low, high, name in truth:
        labels[(points[:, 0] >= low) & (points[:, 0] < high)] = NYU40[name]
    colors = np.full((len(points), 3), 128, np.uint8)
    return Scan(points, colors, labels=labels, features=features)


@pytest.fixture(scope="module")
def feature_segmenter(random_checkpoint, minilm):
    """Input features, pooling off: every point its own voxel, decided by its own features."""
    model, metadata = load_checkpoint(random_checkpoint, "cpu")
    config = SegmenterConfig(device="cpu", pooling=False, query_rule=QueryRule(exclude=0.8, alias=None, margin=0.0))
    return Segmenter(model, metadata, minilm, config, allow_untrained=True)


def test_single_query_iou_by_hand(feature_segmenter, minilm):
    regions = [(0.0, 1.0, "chair"), (1.0, 2.0, "table"), (2.0, 3.0, "sofa")]
    # ground truth: chair reaches into the table region; table only its second half
    truth = [(0.0, 1.5, "chair"), (1.5, 2.0, "table"), (2.0, 3.0, "sofa")]
    scans = [("a", feature_scan(minilm, regions, truth)), ("b", feature_scan(minilm, regions, truth[:2]))]
    result, _ = cli.evaluate_dataset(feature_segmenter, scans, mode="single")
    x = scans[0][1].points[:, 0]
    n = lambda mask: int(mask.sum())
    # asked alone, each name answers exactly its region (its own embedding beats every other name)
    chair = n(x < 1.0) / n(x < 1.5)  # answered [0, 1), truth [0, 1.5), same on both scans
    table = n((x >= 1.5) & (x < 2.0)) / n((x >= 1.0) & (x < 2.0))
    # sofa: scan a labels [2, 3) sofa (IoU 1); scan b leaves it unlabelled, where answers are not counted
    single = result["single"]
    assert single["per_class_iou"] == {
        "chair": pytest.approx(round(100 * chair, 2)),
        "sofa": 100.0,
        "table": pytest.approx(round(100 * table, 2)),
    }
    assert single["miou"] == pytest.approx(round(100 * (chair + table + 1.0) / 3, 2), abs=0.01)
    assert single["fmiou"] == single["miou"]  # no wall / floor / other furniture here
    assert single["decision"]["vocabulary"] and single["decision"]["negatives"] == ["wall", "floor", "ceiling"]
    assert single["decision"]["rule"] == {"exclude": 0.8, "alias": None, "margin": 0.0}
    assert result["scenes"][1]["single"]["per_class_iou"].keys() == {"chair", "table"}  # its present classes


def test_single_mode_uses_the_node_defaults():
    from ov3d_ros.node.parameters import SPECS

    query = node_default_query("chair")
    assert query.positives == ("chair",)
    assert "; ".join(query.negatives) == " ".join(SPECS["negatives"].default.split())
    assert query.background is SPECS["use_background"].default
    assert query.uses_vocabulary is SPECS["use_vocabulary"].default
    assert node_default_query("chair", vocabulary=False).uses_vocabulary is False


def test_alias_counts_a_near_name_as_the_query(feature_segmenter, minilm):
    """With aliases, points whose best name is close to the query are answered as it."""
    regions = [(0.0, 1.0, "armchair"), (1.0, 3.0, "refrigerator")]
    scan = feature_scan(minilm, regions, [(0.0, 1.0, "chair")])
    cosine = float(minilm.encode(["chair"])[0] @ minilm.encode(["armchair"])[0])
    strict, _ = cli.evaluate_dataset(feature_segmenter, [("s", scan)], mode="single")
    assert strict["single"]["per_class_iou"]["chair"] == 0.0  # "armchair" competes and wins its points
    loose_rule = QueryRule(exclude=0.9, alias=cosine - 0.01, margin=0.0)
    loose, _ = cli.evaluate_dataset(feature_segmenter, [("s", scan)], mode="single", rule=loose_rule)
    assert loose["single"]["per_class_iou"]["chair"] == 100.0


# ---------------------------------------------------------------------------------- synonyms
def test_synonyms_files_are_read_and_bad_ones_refused(tmp_path):
    good = tmp_path / "syn.yaml"
    good.write_text("sofa: couch\nrefrigerator: [fridge, icebox]\n")
    assert load_synonyms(good, CLASS_NAMES) == {"sofa": ("couch",), "refrigerator": ("fridge", "icebox")}
    as_json = tmp_path / "syn.json"
    as_json.write_text(json.dumps({"chair": ["seat"]}))
    assert load_synonyms(as_json, CLASS_NAMES) == {"chair": ("seat",)}
    assert load_synonyms("builtin", CLASS_NAMES)["sofa"] == BUILTIN_SYNONYMS["sofa"]
    bad = {
        "list.yaml": ("- couch\n", "expected a non-empty mapping"),
        "unknown.yaml": ("settee: couch\n", "unknown class 'settee'"),
        "empty_list.yaml": ("sofa: []\n", "non-empty list"),
        "number.yaml": ("sofa: [3]\n", "names must be text"),
        "two.yaml": ("sofa: 'couch; settee'\n", "one name per entry"),
        "twice.yaml": ("sofa: couch\nchair: couch\n", "given for both 'sofa' and 'chair'"),
        "other_class.yaml": ("sofa: chair\n", "'chair' is a class of its own"),
        "broken.yaml": ("sofa: [couch\n", "not valid YAML"),
        "broken.json": ("{'sofa': 1", "not valid JSON"),
        "control.yaml": ('sofa: "cou\\x07ch"\n', "control characters"),
    }
    for name, (text, reason) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SynonymsError, match=reason):
            load_synonyms(tmp_path / name, CLASS_NAMES)
    with pytest.raises(SynonymsError, match="cannot read"):
        load_synonyms(tmp_path / "missing.yaml", CLASS_NAMES)


def test_classes_are_asked_by_their_synonyms(feature_segmenter, minilm, tmp_path, capsys):
    regions = [(0.0, 1.5, "fridge"), (1.5, 3.0, "couch")]
    scan = feature_scan(minilm, regions, [(0.0, 1.5, "refrigerator"), (1.5, 3.0, "sofa")])
    table = {"refrigerator": ("fridge",), "sofa": ("couch",)}
    result, _ = cli.evaluate_dataset(feature_segmenter, [("s", scan)], mode="single", synonyms=table)
    assert result["single"]["per_name_iou"] == {"couch": 100.0, "fridge": 100.0}
    assert (
        result["per_class_iou"]["refrigerator"] == result["per_class_iou"]["sofa"] == 100.0
    )  # closed set, by synonyms
    assert result["synonyms"] == {"refrigerator": ["fridge"], "sofa": ["couch"]}
    # the command line refuses a bad table with its reason
    path = tmp_path / "scan.npz"
    save_scan(scan, path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("settee: couch\n")
    assert cli.main(["--scene", str(path), "--synonyms", str(bad), "--json"]) == 2  # refused before any model loads
    assert "SynonymsError" in json.loads(capsys.readouterr().out)["error"]
