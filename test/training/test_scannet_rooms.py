"""Real ScanNet rooms as training data: measured entities, their texts, the folder split, oversampling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ov3d_training.data.scene import parse_annotations
from ov3d_training.data.sources import (
    NoTrainingDataError,
    discover_sources,
    repeat_each,
    source_repeats,
    split_repeat,
)
from ov3d_training.scannet.annotate import build_real_annotations, usable_facts
from ov3d_training.scannet.cli import room_of
from ov3d_training.scannet.labels import real_class
from ov3d_training.scannet.room import SUPPORT_GAP, measure_room, room_type_of
from ov3d_training.sim.relations import Relation


@pytest.fixture(scope="module")
def rooms_dir(shared_data):
    path = shared_data / "scannet_rooms"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def kitchen(rooms_dir):
    with np.load(rooms_dir / "scene0003_00.npz") as data:
        arrays = {k: data[k] for k in ("xyz", "rgb", "sem_nyu40", "inst")}
    room = measure_room(arrays["xyz"], arrays["rgb"], arrays["sem_nyu40"], arrays["inst"])
    return arrays, room


def test_every_named_instance_becomes_an_entity(kitchen):
    arrays, room = kitchen
    named = set()
    for instance_id in np.unique(arrays["inst"][arrays["inst"] > 0]):
        members = arrays["inst"] == instance_id
        labels, counts = np.unique(arrays["sem_nyu40"][members], return_counts=True)
        if members.sum() >= 20 and real_class(int(labels[np.argmax(counts)])).category is not None:
            named.add(int(instance_id))
    assert set(room.instance_of_entity.values()) == named
    categories = {e.category for e in room.scene.entities}
    assert {"refrigerator", "sink", "cabinet", "counter", "wall", "floor"} <= categories
    assert room.scene.room_type == "kitchen"


def test_measured_boxes_and_mounts_hold_in_the_points(kitchen):
    arrays, room = kitchen
    by_id = {e.id: e for e in room.scene.entities}
    for e in room.scene.entities:
        pts = arrays["xyz"][arrays["inst"] == room.instance_of_entity[e.id]]
        assert e.box.size[2] == pytest.approx(np.percentile(pts[:, 2], 99) - np.percentile(pts[:, 2], 1), abs=1e-3)
        if e.mount == "on":  # resting on its support's top
            assert abs(e.box.lo[2] - by_id[e.support].box.hi[2]) <= SUPPORT_GAP + 1e-9
        if e.mount == "floor":
            assert e.box.lo[2] <= 0.15 + 1e-9
    fridge = next(e for e in room.scene.entities if e.category == "refrigerator")
    assert fridge.mount == "floor"


def test_texts_name_the_instance_and_only_checked_facts(kitchen):
    _, room = kitchen
    annotations = build_real_annotations(room, {"scan": "scene0003_00"})
    entities = {e["id"]: e for e in annotations["entities"]}
    assert set(entities) == set(room.instance_of_entity.values())
    for entity in entities.values():
        assert entity["captions"], entity
        assert all(
            entity["noun"] in text or entity["category"] in text or "wall" in text for text in entity["captions"]
        )
        for referral in entity["referrals"]:
            assert referral["text"].startswith("the ")
            assert all(0 not in r["targets"] for r in referral["relations"])
    assert all(0 not in r["targets"] and r["subject"] != 0 for r in annotations["relations"])
    assert any(r["type"] == "next to" for r in annotations["relations"])
    # the training reader takes the sidecar as it is: texts keyed by the scan's instance ids
    parsed = parse_annotations(json.loads(json.dumps(annotations)))
    assert set(parsed) == set(entities)
    sink = next(p for p in parsed.values() if p.category == "sink")
    assert "sink" in sink.captions[0]


def test_facts_about_a_missing_wall_are_dropped():
    facts = [Relation("next to", 3, (4,)), Relation("against the wall", 3, (0,)), Relation("behind", 0, (3,))]
    assert usable_facts(facts) == [facts[0]]


def test_synonyms_take_turns_and_unnamed_classes_have_no_texts():
    sofa = real_class(6)
    assert {sofa.noun_for(i) for i in range(4)} == {"sofa", "couch"}
    assert real_class(5).noun_for(7) == "chair"
    assert real_class(40).category is None and real_class(38).category is None and real_class(0).category is None
    assert room_type_of({"toilet", "sink"}) == "bathroom"
    assert room_type_of({"refrigerator", "sink"}) == "kitchen"
    assert room_type_of({"sofa", "chair"}) == "living room"


def test_cli_splits_rooms_and_refuses_the_evaluation_scan(rooms_dir, scannet_npz, tmp_path):
    from ov3d_training.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for name in ("scene0005_00", "scene0005_01", "scene0009_00"):
        shutil.copy(rooms_dir / f"{name}.npz", src)
    out = tmp_path / "out"
    assert main(["scannet-rooms", "--src", str(src), "--out", str(out), "--hold-out", "scene0005"]) == 0
    assert sorted(p.name for p in (out / "val").iterdir()) == [
        "scene0005_00.annotations.json",
        "scene0005_00.npz",
        "scene0005_01.annotations.json",
        "scene0005_01.npz",
    ]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["scene0009_00.annotations.json", "scene0009_00.npz"]
    assert [s.path.name for s in discover_sources([out / "train"])] == ["scene0009_00.npz"]
    assert room_of("scene0005_01") == "scene0005"

    shutil.copy(scannet_npz, src / "renamed.npz")  # a copy of the evaluation scan under another name
    assert main(["scannet-rooms", "--src", str(src), "--out", str(tmp_path / "again")]) == 2


def test_repeat_syntax_oversamples_a_folder(rooms_dir, tmp_path):
    assert split_repeat(f"{rooms_dir}@3") == (rooms_dir, 3)
    assert split_repeat(str(rooms_dir)) == (rooms_dir, 1)
    odd = tmp_path / "odd@2"  # a path that exists as written is never split
    odd.mkdir()
    assert split_repeat(str(odd)) == (odd, 1)
    with pytest.raises(NoTrainingDataError, match="whole number"):
        split_repeat(f"{rooms_dir}@x")
    with pytest.raises(NoTrainingDataError, match="whole number"):
        split_repeat(f"{rooms_dir}@0")
    one = rooms_dir / "scene0001_00.npz"
    args = [f"{rooms_dir}@3", str(one)]
    sources = discover_sources(args)
    repeats = source_repeats(args, sources)
    assert len(sources) == len(list(rooms_dir.glob("*.npz"))) and set(repeats) == {3}
    assert repeat_each(["a", "b"], [2, 1]) == ["a", "a", "b"]


def test_cli_refuses_a_scan_without_labels_with_its_reason(rooms_dir, tmp_path, capsys):
    from ov3d_training.cli import main

    src = tmp_path / "src"
    src.mkdir()
    with np.load(rooms_dir / "scene0009_00.npz") as data:
        np.savez(src / "unlabelled.npz", xyz=data["xyz"], rgb=data["rgb"])  # no sem_nyu40, no inst
    assert main(["scannet-rooms", "--src", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "not a labelled ScanNet scan (missing ['inst', 'sem_nyu40'])" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scannet-rooms", "--src", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert "no .npz scans" in capsys.readouterr().err
