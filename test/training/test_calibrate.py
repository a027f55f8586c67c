"""GGP calibration on held-out simulated rooms: labels, the search, what is recorded, what is refused."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from ov3d_ros.core.checkpoint import CheckpointMetadata, TextSpace, read_metadata, record_ggp, save_checkpoint
from ov3d_ros.core.ggp import GGPConfig
from ov3d_ros.core.network import StudentConfig, StudentNet
from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.eval.scannet20 import CLASS_NAMES
from ov3d_ros.io.bags import write_bag
from ov3d_ros.io.files import save_scan
from ov3d_ros.io.scan import Scan
from ov3d_training.calibrate import cli
from ov3d_training.calibrate.ggp import (
    calibrate_ggp,
    model_record,
    simulated_room_scan,
    thin_like_training,
    training_keep_ratio,
    unpooled_centering,
    variant_settings,
)
from ov3d_training.distill.export import generated_rooms

# the simulator's class table (annotations.json "classes"): id -> NYU40 id (None: not a NYU40 class)
CLASSES = [
    {"id": 1, "name": "wall", "nyu40_id": 1},
    {"id": 2, "name": "floor", "nyu40_id": 2},
    {"id": 7, "name": "table", "nyu40_id": 7},
    {"id": 21, "name": "ceiling", "nyu40_id": 22},
    {"id": 22, "name": "mug", "nyu40_id": None},
]


def _room(rng: np.random.Generator) -> Scan:
    """A 3 x 3 m floor, a wall, a table top and a mug: sim class ids per point, one entity each."""
    floor = np.c_[rng.uniform(0, 3, (3000, 2)), np.zeros(3000)]
    wall = np.c_[rng.uniform(0, 3, 1500), np.zeros(1500), rng.uniform(0, 2.5, 1500)]
    table = np.c_[rng.uniform(1, 2, (800, 2)), np.full(800, 0.75)]
    mug = np.c_[rng.uniform(1.4, 1.5, (100, 2)), rng.uniform(0.76, 0.86, 100)]
    parts = [(floor, 2, 1), (wall, 1, 2), (table, 7, 3), (mug, 22, 4)]
    points = np.concatenate([p for p, _, _ in parts]).astype(np.float32)
    labels = np.concatenate([np.full(len(p), c) for p, c, _ in parts]).astype(np.int32)
    instances = np.concatenate([np.full(len(p), e) for p, _, e in parts]).astype(np.int32)
    colors = rng.integers(0, 255, (len(points), 3)).astype(np.uint8)
    return Scan(points=points, colors=colors, labels=labels, instances=instances)


@pytest.fixture(scope="module")
def room_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("held_out")
    for i in range(2):
        recording = {"generator": "ov3d_training.sim", "seed": 0, "scene_index": 1000 + i}  # as the simulator writes it
        write_bag(
            root / f"scene_{1000 + i}",
            [_room(np.random.default_rng(i))],
            annotations={"classes": CLASSES, "entities": [], "recording": recording},
        )
    return root


def test_room_labels_become_nyu40_ids(room_bags):
    scan = simulated_room_scan(room_bags / "scene_1000")
    original = _room(np.random.default_rng(0))
    expected = {2: 2, 1: 1, 7: 7, 22: 0}  # the mug has no NYU40 id: ignored by the metric
    assert len(scan) == len(original)
    assert np.array_equal(np.sort(scan.labels), np.sort(np.vectorize(expected.get)(original.labels)))
    assert set(np.unique(scan.instances)) == {1, 2, 3, 4}


def test_a_room_without_the_class_table_is_refused(tmp_path):
    write_bag(tmp_path / "no_classes", [_room(np.random.default_rng(3))], annotations={"entities": []})
    with pytest.raises(ValueError, match="class table"):
        simulated_room_scan(tmp_path / "no_classes")


def test_search_keeps_the_best_row_per_variant_and_records_it(random_checkpoint_5cm, room_bags, tmp_path):
    """Random weights: the plumbing of the search, not its numbers."""
    segmenter = Segmenter.from_checkpoint(
        random_checkpoint_5cm,
        device="cpu",
        allow_untrained=True,
        config=SegmenterConfig(device="cpu", ggp=GGPConfig(k=8)),
    )
    rooms = [(p.name, simulated_room_scan(p)) for p in sorted(room_bags.iterdir())]
    embeddings = segmenter.text_encoder.encode(list(CLASS_NAMES))
    result = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.05, 0.2), iterations=(4, 0, 2))
    assert result.k == 8 and result.rooms == ["scene_1000", "scene_1001"]
    assert result.points == sum(int((scan.labels > 0).sum()) for _, scan in rooms)  # every NYU40-labelled point
    assert len(result.table) == 2 * 2 * 3 + 2 * 1 * 3  # tau searched only where weights are cosine softmaxes
    assert {r["miou"] for r in result.table if r["T"] == 0} == {result.no_pooling}  # T = 0 is no pooling
    for variant, best in result.best.items():
        rows = [r for r in result.table if r["variant"] == variant]
        top = max(r["miou"] for r in rows)
        assert best["miou"] == top
        fewest = min(r["T"] for r in rows if r["miou"] == top)
        assert best["T"] == fewest  # ties: fewer passes

    checkpoint = tmp_path / "ckpt"
    save_checkpoint(checkpoint, segmenter.model.cpu(), segmenter.metadata)
    record_ggp(checkpoint, model_record(result))
    metadata = read_metadata(checkpoint)
    learned = result.best["ggp_learned"]
    assert metadata.ggp_config() == GGPConfig(k=8, tau=learned["tau"], iterations=learned["T"])
    settings = variant_settings(metadata)
    assert set(settings) == set(result.best) and settings["ggp_distance"].weights == "distance"
    assert variant_settings(segmenter.metadata) == {}  # not calibrated: nothing recorded
    assert metadata.ggp["calibration"]["ceiling_miou"] == result.ceiling is not None

    # the ceiling gives each true object its mean logits; voxels of no object keep their own, so
    # rooms without objects have a ceiling equal to no pooling
    for _, scan in rooms:
        scan.instances = np.zeros_like(scan.instances)
    no_objects = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.05,), iterations=(0,))
    assert no_objects.ceiling == no_objects.no_pooling == result.no_pooling


def test_search_over_pooling_cells_scores_no_pooling_once_and_records_the_cells(
    random_checkpoint_5cm, room_bags, tmp_path
):
    """Random weights: the plumbing of the coarse-to-fine search, not its numbers."""
    segmenter = Segmenter.from_checkpoint(
        random_checkpoint_5cm,
        device="cpu",
        allow_untrained=True,
        config=SegmenterConfig(device="cpu", ggp=GGPConfig(k=8)),
    )
    rooms = [(p.name, simulated_room_scan(p)) for p in sorted(room_bags.iterdir())]
    result = calibrate_ggp(
        segmenter,
        rooms,
        segmenter.text_encoder.encode(list(CLASS_NAMES)),
        taus=(0.05, 0.2),
        iterations=(0, 2, 4),
        coarsen=(1, 3),
    )
    # taus: 1 each for uniform and distance, 2 each for the cosine variants; per variant and tau:
    # T 0 once (no pooling is the same on any cells), T 2 and 4 on each of the 2 cell sizes
    assert len(result.table) == (1 + 1 + 2 + 2) * (1 + 2 * 2)
    assert {(r["coarsen"], r["T"]) for r in result.table} == {(1, 0), (1, 2), (1, 4), (3, 2), (3, 4)}
    assert {r["miou"] for r in result.table if r["T"] == 0} == {result.no_pooling}
    for variant, best in result.best.items():
        top = max(r["miou"] for r in result.table if r["variant"] == variant)
        assert best["miou"] == top and best["coarsen"] in (1, 3)
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(checkpoint, segmenter.model.cpu(), segmenter.metadata)
    record_ggp(checkpoint, model_record(result))
    metadata = read_metadata(checkpoint)
    learned = result.best["ggp_learned"]
    assert metadata.ggp_config() == GGPConfig(
        k=8, tau=learned["tau"], iterations=learned["T"], coarsen=learned["coarsen"]
    )
    assert {v: s.coarsen for v, s in variant_settings(metadata).items()} == {
        v: b["coarsen"] for v, b in result.best.items()
    }


def test_search_over_centering_scores_each_share_and_records_the_chosen_one(random_checkpoint_5cm, room_bags, tmp_path):
    """Random weights: the plumbing of the centering search, not its numbers."""
    config = SegmenterConfig(device="cpu", ggp=GGPConfig(k=8, centering=0.75))  # a caller's centering is not used...
    segmenter = Segmenter.from_checkpoint(random_checkpoint_5cm, device="cpu", allow_untrained=True, config=config)
    rooms = [(p.name, simulated_room_scan(p)) for p in sorted(room_bags.iterdir())]
    embeddings = segmenter.text_encoder.encode(list(CLASS_NAMES))
    result = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.1,), iterations=(0, 4), centering=(0.0, 0.5, 1.0))
    assert segmenter.config.ggp.centering == 0.75  # ...and is left as it was
    assert len(result.table) == 4 * 2 * 3
    assert {r["centering"] for r in result.table} == {0.0, 0.5, 1.0}
    # T = 0 at centering 0 is the raw head; the best centred unpooled row is the fair baseline
    unpooled = {r["centering"]: r["miou"] for r in result.table if r["T"] == 0}
    assert unpooled[0.0] == result.no_pooling
    assert result.no_pooling_centered["miou"] == max(unpooled.values())
    assert unpooled[result.no_pooling_centered["centering"]] == result.no_pooling_centered["miou"]
    plain = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.1,), iterations=(0, 4))
    assert plain.no_pooling == result.no_pooling  # the grid's centering 0 is the uncentred field
    for variant, best in result.best.items():
        assert best["miou"] == max(r["miou"] for r in result.table if r["variant"] == variant)
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(checkpoint, segmenter.model.cpu(), segmenter.metadata)
    record_ggp(checkpoint, model_record(result))
    metadata = read_metadata(checkpoint)
    learned = result.best["ggp_learned"]
    assert metadata.ggp_config().centering == learned["centering"]
    assert {v: s.centering for v, s in variant_settings(metadata).items()} == {
        v: b["centering"] for v, b in result.best.items()
    }
    assert metadata.ggp["calibration"]["no_pooling_centered"] == result.no_pooling_centered
    assert unpooled_centering(metadata) == result.no_pooling_centered["centering"]
    assert unpooled_centering(segmenter.metadata) is None  # not calibrated: nothing recorded


def test_rooms_are_thinned_by_whole_voxels_like_training_items_and_repeatably():
    room = _room(np.random.default_rng(3))
    voxels = voxelize(room.points, 0.05)
    thinned = thin_like_training(room, (0.35, 0.6), 0.05, np.random.default_rng([7, 0]))
    again = thin_like_training(room, (0.35, 0.6), 0.05, np.random.default_rng([7, 0]))
    assert np.array_equal(thinned.points, again.points)  # same seed, same rooms
    # every kept point's voxel keeps all its points (whole voxels go, as in a training item)
    key = lambda pts: set(map(tuple, np.floor(pts / 0.05).astype(np.int64)))
    kept = key(thinned.points)
    whole = np.array([tuple(c) in kept for c in np.floor(room.points / 0.05).astype(np.int64)])
    assert whole.sum() == len(thinned)
    share = len(kept) / voxels.num_voxels
    assert 0.35 - 0.01 <= share <= 0.6 + 0.01
    assert np.array_equal(np.sort(thinned.labels), np.sort(room.labels[whole]))  # labels travel with their points
    assert thin_like_training(room, (1.0, 1.0), 0.05, np.random.default_rng(0)) is room  # 1 1: as rendered


def test_keep_ratio_comes_from_the_students_recipe(random_checkpoint_5cm, room_bags):
    metadata = read_metadata(random_checkpoint_5cm)
    assert training_keep_ratio(metadata) == (1.0, 1.0)  # no recipe recorded: rooms as rendered
    metadata.extra = {"recipe": {"data": {"augment": {"keep_ratio": [0.35, 1.0]}}}}
    assert training_keep_ratio(metadata) == (0.35, 1.0)
    segmenter = Segmenter.from_checkpoint(
        random_checkpoint_5cm,
        device="cpu",
        allow_untrained=True,
        config=SegmenterConfig(device="cpu", ggp=GGPConfig(k=8)),
    )
    rooms = [(p.name, simulated_room_scan(p)) for p in sorted(room_bags.iterdir())]
    embeddings = segmenter.text_encoder.encode(list(CLASS_NAMES))
    dense = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.1,), iterations=(0, 2))
    thinned = calibrate_ggp(segmenter, rooms, embeddings, taus=(0.1,), iterations=(0, 2), keep_ratio=(0.35, 0.5))
    assert thinned.points < 0.55 * dense.points and thinned.keep_ratio == (0.35, 0.5)
    assert model_record(thinned)["calibration"]["keep_ratio"] == [0.35, 0.5]
    assert thinned.to_dict()["keep_ratio"] == [0.35, 0.5]
    with pytest.raises(ValueError, match="keep_ratio"):
        calibrate_ggp(segmenter, rooms, embeddings, keep_ratio=(0.0, 0.5))


def test_generated_rooms_are_known_by_generator_seed_and_index(room_bags, tmp_path):
    sources = [str(p) for p in sorted(room_bags.iterdir())]
    loose = tmp_path / "room.ply"
    save_scan(_room(np.random.default_rng(5)), loose)
    assert generated_rooms([*sources, str(loose), str(tmp_path / "gone")]) == [
        "ov3d_training.sim:seed=0:scene=1000",
        "ov3d_training.sim:seed=0:scene=1001",
    ]


def _run(args: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(args))


def test_cli_refuses_random_weights_and_the_students_own_training_rooms(
    random_checkpoint_5cm, room_bags, tmp_path, capsys
):
    assert _run(["--student", str(random_checkpoint_5cm), "--data", str(room_bags), "--no-progress"]) == 2
    assert "untrained" in capsys.readouterr().err.lower()
    # a checkpoint (marked trained for this plumbing check only) that lists a room as its training data
    model = StudentNet(StudentConfig())
    meta = CheckpointMetadata(
        architecture=model.config,
        text_space=TextSpace("minilm-l6-v2", 384),
        voxel_size=0.05,
        training_data={"sources": [str(room_bags / "scene_1001")]},
    )
    trained_on_room = save_checkpoint(tmp_path / "ckpt", model, meta)
    assert _run(["--student", str(trained_on_room), "--data", str(room_bags), "--no-progress"]) == 2
    assert "training data" in capsys.readouterr().err
    assert read_metadata(trained_on_room).ggp is None  # nothing recorded
    assert _run(["--student", str(trained_on_room), "--data", str(room_bags), "--taus", "0", "--no-progress"]) == 2
    assert "--taus must be > 0" in capsys.readouterr().err
    assert _run(["--student", str(trained_on_room), "--data", str(room_bags), "--coarsen", "0", "--no-progress"]) == 2
    assert "--coarsen >= 1" in capsys.readouterr().err
    for share in ("1.5", "-0.25"):
        assert (
            _run(
                [
                    "--student",
                    str(trained_on_room),
                    "--data",
                    str(room_bags),
                    "--centering",
                    "0",
                    share,
                    "--no-progress",
                ]
            )
            == 2
        )
        assert "--centering values must lie in [0, 1]" in capsys.readouterr().err
    assert (
        _run(
            ["--student", str(trained_on_room), "--data", str(room_bags), "--keep-ratio", "0.8", "0.5", "--no-progress"]
        )
        == 2
    )
    assert "--keep-ratio must satisfy" in capsys.readouterr().err
    # a recipe whose keep_ratio cannot be a share of voxels: refused with its name, not a traceback
    bad_recipe = CheckpointMetadata(
        architecture=model.config,
        text_space=TextSpace("minilm-l6-v2", 384),
        voxel_size=0.05,
        extra={"recipe": {"data": {"augment": {"keep_ratio": [0.0, 1.0]}}}},
    )
    bad_recipe_ckpt = save_checkpoint(tmp_path / "ckpt_bad_recipe", model, bad_recipe)
    assert _run(["--student", str(bad_recipe_ckpt), "--data", str(room_bags), "--no-progress"]) == 2
    assert "augment.keep_ratio must satisfy" in capsys.readouterr().err
    assert read_metadata(bad_recipe_ckpt).ggp is None
    loose_scan = tmp_path / "scans" / "room.ply"  # a scan file has no class table: refused, not misread
    loose_scan.parent.mkdir()
    save_scan(_room(np.random.default_rng(4)), loose_scan)
    assert _run(["--student", str(trained_on_room), "--data", str(loose_scan.parent), "--no-progress"]) == 2
    assert "bag folders" in capsys.readouterr().err
    # the same generated room elsewhere (moved, or rendered again with the same seed and index)
    moved = StudentNet(StudentConfig())
    meta = CheckpointMetadata(
        architecture=moved.config,
        text_space=TextSpace("minilm-l6-v2", 384),
        voxel_size=0.05,
        training_data={"sources": ["/elsewhere/scene_1000"], "rooms": ["ov3d_training.sim:seed=0:scene=1000"]},
    )
    trained_elsewhere = save_checkpoint(tmp_path / "ckpt_elsewhere", moved, meta)
    assert _run(["--student", str(trained_elsewhere), "--data", str(room_bags), "--no-progress"]) == 2
    assert "scene_1000" in capsys.readouterr().err
    # a room only the teacher trained on
    meta.training_data = {"sources": [], "teacher": {"training_data": [str(room_bags / "scene_1001")]}}
    teacher_room = save_checkpoint(tmp_path / "ckpt_teacher_room", moved, meta)
    assert _run(["--student", str(teacher_room), "--data", str(room_bags), "--no-progress"]) == 2
    assert "scene_1001" in capsys.readouterr().err


def test_the_shipped_model_knows_its_training_rooms_and_was_calibrated_on_others():
    from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT

    metadata = read_metadata(DEFAULT_CHECKPOINT)
    trained_on = metadata.training_data["rooms"]
    simulated = [
        s for s in metadata.training_data["sources"] if not s.endswith(".npz")
    ]  # v4 also trained on real scans
    assert len(trained_on) == len(set(trained_on)) == len(simulated) > 0
    calibration = metadata.ggp["calibration"]
    calibrated_on = {f"ov3d_training.sim:seed=0:scene={int(name.split('_')[1])}" for name in calibration["rooms"]}
    assert calibrated_on and not calibrated_on & set(trained_on)
    assert (
        calibration["no_pooling_miou"] < calibration["variants"]["ggp_learned"]["miou"] <= calibration["ceiling_miou"]
    )
    # the rooms were thinned as the student's training items were
    assert tuple(calibration["keep_ratio"]) == training_keep_ratio(metadata) == (0.35, 1.0)


def test_calibration_file_has_a_line_per_table_row_and_reads_back():
    from ov3d_training.calibrate.cli import calibration_json

    record = {
        "k": 16,
        "best": {"ggp_learned": {"T": 4}},
        "table": [{"variant": "a", "T": t, "miou": 1.5 * t} for t in range(3)],
    }
    text = calibration_json(record)
    assert json.loads(text) == record
    assert sum('"variant"' in line for line in text.splitlines()) == 3
    assert json.loads(calibration_json({"k": 16, "table": []})) == {"k": 16, "table": []}
