"""End-to-end simulator tests: determinism, labels vs. the renderer, true texts, bags, CLI, demo."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from sim_support import library

import ov3d_ros
from ov3d_ros.io.bags import read_annotations, read_bag
from ov3d_ros.io.scan import unpack_label
from ov3d_training.sim.camera import project
from ov3d_training.sim.recipes import ROOM_TYPES
from ov3d_training.sim.recorder import RecordingConfig, record_scene
from ov3d_training.sim.vocabulary import CLASS_BY_NAME, CLASSES

TINY = RecordingConfig(frames=6, width=64, height=48, publish_every=3)


@pytest.fixture(scope="module")
def lib():
    return library()


@pytest.fixture(scope="module")
def rooms(lib):
    """One recording of each room type (ideal depth, frames kept)."""
    cfg = RecordingConfig(frames=8, width=96, height=72, publish_every=4, sensor="ideal")
    return [record_scene(lib, 11, i, None, cfg, keep_frames=True) for i in range(len(ROOM_TYPES))]


def _arrays(rec):
    return [(c.points, c.colors, c.labels, c.instances, c.stamp_ns) for c in rec.clouds]


def test_same_seed_same_recording_other_seed_other_room(lib):
    a = record_scene(lib, 5, 2, None, TINY)
    b = record_scene(lib, 5, 2, None, TINY)
    c = record_scene(lib, 6, 2, None, TINY)
    assert json.dumps(a.annotations, sort_keys=True) == json.dumps(b.annotations, sort_keys=True)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        for u, v in zip(x, y):
            assert np.array_equal(u, v)
    assert a.annotations["entities"] != c.annotations["entities"]


def test_frame_count_and_sensor_do_not_change_the_room(lib):
    a = record_scene(lib, 5, 3, None, TINY)
    b = record_scene(lib, 5, 3, None, RecordingConfig(frames=3, width=48, height=36, sensor="tof"))
    assert a.annotations["entities"] == b.annotations["entities"]


def test_every_point_carries_the_label_of_its_pixel(lib):
    rec = record_scene(
        lib, 2, 1, None, RecordingConfig(frames=5, width=96, height=72, sensor="kinect"), keep_frames=True
    )
    intr = RecordingConfig(width=96, height=72).intrinsics()
    category = {e["id"]: e["category"] for e in rec.annotations["entities"]}
    total = 0
    for f in rec.frames:
        # noisy points still project back onto the pixel they came from ...
        uv, _z = project(f.points, intr, f.pose)
        u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        assert np.array_equal(v * intr.width + u, f.pixels)
        # ... and their label is the renderer's segmentation there, packed as class << 16 | entity
        semantic, instance = unpack_label(f.labels)
        assert np.array_equal(instance, f.entity[v, u])
        assert (instance > 0).all()
        expected = np.array([CLASS_BY_NAME[category[i]].semantic_id for i in instance])
        assert np.array_equal(semantic, expected)
        total += len(f.points)
    assert total > 5 * 96 * 72 * 0.5


def test_points_of_an_entity_lie_in_its_box(rooms):
    for rec in rooms:
        boxes = {e["id"]: e["aabb"] for e in rec.annotations["entities"]}
        for f in rec.frames:
            _, instance = unpack_label(f.labels)
            lo = np.array([boxes[i]["min"] for i in instance]) - 0.005
            hi = np.array([boxes[i]["max"] for i in instance]) + 0.005
            inside = ((f.points >= lo) & (f.points <= hi)).all(axis=1)
            assert inside.mean() > 0.999, rec.scene.room_type


def test_fused_map_labels_are_known_entities_and_classes(rooms):
    for rec in rooms:
        ids = {e["id"]: e["semantic_id"] for e in rec.annotations["entities"]}
        last = rec.clouds[-1]
        assert len(last) > 1000
        assert set(np.unique(last.instances)) <= set(ids)
        assert all(ids[i] == s for i, s in set(zip(last.instances.tolist(), last.labels.tolist())))
        # the map only grows
        sizes = [len(c) for c in rec.clouds]
        assert sizes == sorted(sizes)


def test_entities_do_not_interpenetrate(rooms):
    for rec in rooms:
        ents = {e["id"]: e for e in rec.annotations["entities"]}
        placed = [e for e in ents.values() if e["mount"] not in ("structure", "opening")]
        for i, a in enumerate(placed):
            for b in placed[i + 1 :]:
                if a["support"] == b["id"] or b["support"] == a["id"]:
                    continue
                lo = np.maximum(a["aabb"]["min"], b["aabb"]["min"])
                hi = np.minimum(a["aabb"]["max"], b["aabb"]["max"])
                assert not (hi - lo > 1e-6).all(), (rec.scene.room_type, a["noun"], b["noun"])
        W, L, H = rec.annotations["room"]["size_m"]
        for e in placed:
            assert e["aabb"]["min"][0] >= -1e-6 and e["aabb"]["max"][0] <= W + 1e-6
            assert e["aabb"]["min"][1] >= -1e-6 and e["aabb"]["max"][1] <= L + 1e-6
            assert e["aabb"]["max"][2] <= H


# --- texts ------------------------------------------------------------------------------------------
def _gap(a, b) -> float:
    dx = max(a["min"][0] - b["max"][0], b["min"][0] - a["max"][0], 0.0)
    dy = max(a["min"][1] - b["max"][1], b["min"][1] - a["max"][1], 0.0)
    return math.hypot(dx, dy)


def _footprint_points(entity) -> np.ndarray:
    x, y, _ = entity["pose"]["position"]
    w, d, _ = entity["pose"]["size"]
    c, s = math.cos(entity["pose"]["yaw"]), math.sin(entity["pose"]["yaw"])
    local = np.array([[0, 0], [0.3 * w, 0.3 * d], [-0.3 * w, 0.3 * d], [0.3 * w, -0.3 * d], [-0.3 * w, -0.3 * d]])
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


class _RayWorld:
    """The scene's geometry as pybullet collision meshes, built independently of the placement code."""

    def __init__(self, scene, skip: int):
        from ov3d_training.sim.world import build_world

        self.world = build_world(scene, collision=True, exclude=frozenset({skip}))

    def first_hits(self, xy: np.ndarray, z_from: float, z_to: float) -> list[tuple[int, float]]:
        import pybullet as p

        starts = [[float(x), float(y), z_from] for x, y in xy]
        ends = [[float(x), float(y), z_to] for x, y in xy]
        lookup = self.world.body_entity
        out = []
        for hit in p.rayTestBatch(starts, ends, physicsClientId=self.world.client):
            out.append((lookup.get(hit[0], 0), z_from + hit[2] * (z_to - z_from)))
        return out

    def close(self):
        self.world.close()


def check_relation(rel: dict, subject: dict, ents: dict, thresholds: dict, room_size, scene) -> None:
    kind, targets = rel["type"], rel["targets"]
    box = subject["aabb"]
    t = [ents[i] for i in targets]
    if kind == "on":
        # rays down from just above the subject's bottom, with the subject removed, hit the support
        rays = _RayWorld(scene, subject["id"])
        try:
            hits = rays.first_hits(_footprint_points(subject), box["min"][2] + 0.03, box["min"][2] - 0.5)
        finally:
            rays.close()
        for entity_id, z in hits:
            assert entity_id == targets[0] and box["min"][2] - 0.06 <= z <= box["min"][2] + 1e-3, (hits, box)
    elif kind == "under":
        assert box["max"][2] <= t[0]["aabb"]["min"][2] + 0.01 and _gap(box, t[0]["aabb"]) == 0.0
    elif kind in ("above", "below"):
        upper, lower = (subject, t[0]) if kind == "above" else (t[0], subject)
        ub, lb = upper["aabb"], lower["aabb"]
        assert lb["max"][2] - 0.01 <= ub["min"][2] <= lb["max"][2] + thresholds["above_max"]
        c = (np.array(ub["min"][:2]) + ub["max"][:2]) / 2
        m = thresholds["above_xy"]
        assert (np.array(lb["min"][:2]) - m <= c).all() and (c <= np.array(lb["max"][:2]) + m).all()
    elif kind == "next to":
        assert _gap(box, t[0]["aabb"]) <= thresholds["next_to"] + 1e-9
        assert box["min"][2] < t[0]["aabb"]["max"][2] and t[0]["aabb"]["min"][2] < box["max"][2]
    elif kind == "in front of":
        # the subject's box, seen from the target (turned by a multiple of 90 degrees): beyond its
        # front face (-y), within the threshold, overlapping its width
        pose = t[0]["pose"]
        assert abs(math.sin(2 * pose["yaw"])) < 1e-4 and subject["mount"] == t[0]["mount"] == "floor"
        yaw = round(pose["yaw"] / (math.pi / 2)) % 4  # quarter turns
        dx = [box["min"][0] - pose["position"][0], box["max"][0] - pose["position"][0]]
        dy = [box["min"][1] - pose["position"][1], box["max"][1] - pose["position"][1]]
        # front direction of the target in the world, and its lateral axis
        front = [(0, -1), (1, 0), (0, 1), (-1, 0)][yaw]
        ahead = [front[0] * x + front[1] * y for x in dx for y in dy]
        side = [front[1] * x - front[0] * y for x in dx for y in dy]
        w, d = pose["size"][0], pose["size"][1]
        assert d / 2 - 1e-6 <= min(ahead) <= d / 2 + thresholds["in_front"]
        assert min(side) < w / 2 and max(side) > -w / 2
    elif kind == "near":
        assert _gap(box, t[0]["aabb"]) <= thresholds["near_opening"] + 1e-9
        assert "opening" in (subject["mount"], t[0]["mount"])
    elif kind == "between":
        c = (np.array(box["min"]) + box["max"]) / 2
        b0, b1 = t[0]["aabb"], t[1]["aabb"]
        ok = False
        for axis in (0, 1):
            lo, hi = (b0, b1) if b0["min"][axis] < b1["min"][axis] else (b1, b0)
            ok |= lo["max"][axis] <= c[axis] + 1e-6 <= hi["min"][axis] + 2e-6
        assert ok and all(_gap(box, x["aabb"]) <= thresholds["next_to"] + 1e-9 for x in (t[0], t[1]))
    elif kind in ("in the corner", "against the wall"):
        W, L, _ = room_size
        dist = {0: box["min"][1], 1: W - box["max"][0], 2: L - box["max"][1], 3: box["min"][0]}
        walls = [x["wall"] for x in t]
        assert all(x["category"] == "wall" for x in t)
        limit = thresholds["corner"] if kind == "in the corner" else thresholds["against"]
        assert all(dist[w] <= limit + 1e-9 for w in walls)
        if kind == "in the corner":
            assert (walls[0] - walls[1]) % 2 == 1  # perpendicular walls
    elif kind == "with":
        assert subject["category"] == "wall" and t[0]["mount"] == "opening" and t[0]["wall"] == subject["wall"]
    elif kind == "behind":
        assert subject["category"] == "wall" and t[0]["wall"] == subject["wall"]
    else:
        raise AssertionError(f"unknown relation {kind}")


def _all_nouns() -> set[str]:
    from ov3d_training.sim.catalog import read_catalog

    nouns = {e.noun for e in read_catalog() if e.noun}
    return nouns | {c.name for c in CLASSES} | {"drinking glass", "picture", "pillow", "keyboard", "monitor"}


def test_referrals_state_only_true_relations_between_existing_entities(rooms):
    nouns = sorted(_all_nouns(), key=len, reverse=True)
    checked = 0
    for rec in rooms:
        ann = rec.annotations
        ents = {e["id"]: e for e in ann["entities"]}
        facts = {(r["type"], r["subject"], tuple(r["targets"])) for r in ann["relations"]}
        for e in ann["entities"]:
            for ref in e["referrals"]:
                mentioned = {e["noun"]}
                for rel in ref["relations"]:
                    assert all(i in ents for i in rel["targets"])
                    assert (rel["type"], e["id"], tuple(rel["targets"])) in facts
                    check_relation(rel, e, ents, ann["relation_thresholds_m"], ann["room"]["size_m"], rec.scene)
                    mentioned |= {ents[i]["noun"] for i in rel["targets"]}
                    checked += 1
                text = ref["text"]
                for noun in mentioned - {"wall"}:
                    assert re.search(rf"\b{re.escape(noun)}\b", text), (noun, text)
                # every object noun in the text belongs to the subject or a stated target
                rest = text
                for noun in nouns:
                    if re.search(rf"\b{re.escape(noun)}\b", rest):
                        assert any(noun in m for m in mentioned | {"wall"}), (noun, text, mentioned)
                        rest = re.sub(rf"\b{re.escape(noun)}\b", " ", rest)
    assert checked > 40


def test_every_relation_fact_holds(rooms):
    for rec in rooms:
        ann = rec.annotations
        ents = {e["id"]: e for e in ann["entities"]}
        for r in ann["relations"]:
            check_relation(r, ents[r["subject"]], ents, ann["relation_thresholds_m"], ann["room"]["size_m"], rec.scene)


def test_captions_use_the_entity_attributes(rooms):
    for rec in rooms:
        for e in rec.annotations["entities"]:
            assert e["captions"], e
            attrs = e["attributes"]
            if attrs["color"]:
                assert any(attrs["color"] in c for c in e["captions"])
            if attrs["size"]:
                assert attrs["size"] in e["captions"][0]
            assert e["noun"] in e["captions"][0] or e["category"] in ("wall",)
            assert e["attribution"]["license"]


def test_annotations_keep_catalogue_attribution(rooms):
    models = [e for rec in rooms for e in rec.annotations["entities"] if "catalog_id" in e["attribution"]]
    assert models
    for e in models:
        assert {"model", "creator", "license", "source"} <= set(e["attribution"])
        assert e["attribution"]["license"] in {"CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US"}


# --- bags ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_through_the_io_readers(lib, tmp_path, storage):
    cfg = RecordingConfig(frames=6, width=64, height=48, publish_every=3, storage=storage)
    rec = record_scene(lib, 4, 0, tmp_path / "scene", cfg)
    frames = list(read_bag(rec.path))
    assert len(frames) == len(rec.clouds) == 2
    for frame, cloud, pose in zip(frames, rec.clouds, rec.poses):
        assert frame.scan.frame_id == "map" and frame.scan.stamp_ns == cloud.stamp_ns
        assert np.array_equal(frame.scan.points, cloud.points)
        assert np.array_equal(frame.scan.colors, cloud.colors)
        assert np.array_equal(frame.scan.labels, cloud.labels)
        assert np.array_equal(frame.scan.instances, cloud.instances)
        assert np.allclose(frame.pose, pose, atol=1e-9)
    assert read_annotations(rec.path) == json.loads(json.dumps(rec.annotations))


def test_training_loader_reads_the_recording(lib, tmp_path):
    from ov3d_training.data.scene import parse_annotations
    from ov3d_training.data.sources import Source, load_source

    rec = record_scene(lib, 4, 1, tmp_path / "scene", TINY)
    loaded = load_source(Source(rec.path, "bag"))
    assert np.array_equal(loaded.scan.instances, rec.clouds[-1].instances)
    notes = parse_annotations(loaded.annotations)
    assert set(notes) == {e["id"] for e in rec.annotations["entities"]}
    assert all(n.captions for n in notes.values())


# --- CLI and demo ---------------------------------------------------------------------------------
def test_cli_renders_resumes_and_refuses_mixing_seeds(lib, tmp_path, capsys):
    from ov3d_training.sim.cli import build_parser, main

    argv = [
        "--scenes",
        "2",
        "--seed",
        "3",
        "--out",
        str(tmp_path),
        "--workers",
        "1",
        "--frames-per-scene",
        "3",
        "--resolution",
        "48x36",
        "--publish-every",
        "3",
        "--no-progress",
    ]
    assert main(build_parser().parse_args(argv)) == 0
    summary = json.loads((tmp_path / "simulation.json").read_text())
    assert [s["path"] for s in summary["scenes"]] == ["scene_0000", "scene_0001"]
    assert [s["room_type"] for s in summary["scenes"]] == [ROOM_TYPES[3], ROOM_TYPES[4]]
    first = (tmp_path / "scene_0000" / "annotations.json").read_bytes()
    assert main(build_parser().parse_args(argv)) == 0
    assert json.loads((tmp_path / "simulation.json").read_text())["skipped_existing"] == 2
    assert (tmp_path / "scene_0000" / "annotations.json").read_bytes() == first
    other = list(argv)
    other[other.index("--seed") + 1] = "4"
    assert main(build_parser().parse_args(other)) == 2
    assert "another seed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv[:-1], "--resolution", "big"])


def test_packaged_demo_recording_is_small_readable_and_reproducible(lib, tmp_path):
    from ov3d_training.sim.demo import default_demo_dir, make_demo_recording

    packaged = default_demo_dir()
    assert (packaged / "metadata.yaml").is_file(), "regenerate with: python -m ov3d_training.sim.demo"
    size = sum(f.stat().st_size for f in packaged.iterdir())
    assert size < 5e6
    shipped = list(read_bag(packaged))
    assert len(shipped) >= 2 and len(shipped[-1].scan) > 10000
    fresh = list(read_bag(make_demo_recording(tmp_path / "demo_scene")))
    for a, b in zip(shipped, fresh, strict=True):
        assert np.array_equal(a.scan.points, b.scan.points) and np.array_equal(a.scan.labels, b.scan.labels)
    made_now = read_annotations(tmp_path / "demo_scene")
    assert made_now["recording"].pop("code")["version"] == ov3d_ros.__version__  # which code drew it
    packaged_annotations = read_annotations(packaged)
    packaged_annotations["recording"].pop("code", None)  # the packaged one predates the field
    assert packaged_annotations == made_now  # the same room, whichever commit drew it
