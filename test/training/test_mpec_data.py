"""MPEC data: augmentation, over-segmentation, sources (and the evaluation-scan guard), scene preparation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from mpec_synthetic import make_room, write_npz_scans, write_recordings

from ov3d_ros.core.voxel import voxelize
from ov3d_training.data.augment import AugmentConfig, augment_view, elastic_distortion, thin_points
from ov3d_training.data.dataset import MPECDataset, ViewConfig
from ov3d_training.data.overseg import OversegConfig, estimate_normals, felzenszwalb_graph, oversegment
from ov3d_training.data.scene import SceneConfig, TrainingScene, parse_annotations, prepare_scene, prepare_scenes
from ov3d_training.data.sources import (
    EvaluationDataError,
    NoTrainingDataError,
    Source,
    discover_sources,
    load_source,
)

NO_RANDOM_GEOMETRY = dict(scale=(1.0, 1.0), jitter_sigma=0.0, elastic=[], color_shift=0.0, color_noise=0.0)


# ------------------------------------------------------------------------------ augmentation
def test_rotation_and_flip_are_rigid_about_the_vertical_axis():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (500, 3)).astype(np.float32)
    normals = np.tile(np.float32([1, 0, 0]), (500, 1))
    view = augment_view(points, np.full((500, 3), 0.5, np.float32), normals, AugmentConfig(**NO_RANDOM_GEOMETRY), rng)
    assert np.allclose(view.points[:, 2], points[:, 2], atol=1e-5)  # heights kept
    d_in = np.linalg.norm(points[:, None, :2] - points[None, :, :2], axis=2)
    d_out = np.linalg.norm(view.points[:, None, :2] - view.points[None, :, :2], axis=2)
    assert np.allclose(d_in, d_out, atol=1e-4)  # rigid in the plane
    assert np.allclose(np.linalg.norm(view.normals, axis=1), 1.0, atol=1e-5)
    assert np.allclose(view.normals[:, 2], 0.0, atol=1e-6)  # horizontal normals stay horizontal
    assert np.allclose(view.colors, 0.5)


def test_scale_jitter_color_and_elastic_stay_bounded():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 2, (2000, 3)).astype(np.float32)
    colors = rng.uniform(0, 1, (2000, 3)).astype(np.float32)
    config = AugmentConfig(rotate_z_deg=0.0, flip_p=0.0, elastic=[], elastic_p=0.0, scale=(1.2, 1.2))
    view = augment_view(points, colors, None, config, rng)
    assert view.normals is None
    center = np.r_[points[:, :2].mean(axis=0), 0.0]
    expected = (points - center) * 1.2
    assert np.abs(view.points - expected).max() <= config.jitter_clip + 1e-5
    assert view.colors.min() >= 0.0 and view.colors.max() <= 1.0
    shifted = elastic_distortion(points.astype(np.float64), 0.2, 0.4, np.random.default_rng(2))
    displacement = np.linalg.norm(shifted - points, axis=1)
    assert 0 < displacement.mean() < 0.4
    # smooth: close points move alike
    near = np.linalg.norm(points[:1] - points, axis=1) < 0.05
    assert np.linalg.norm(shifted[near] - points[near] - (shifted[0] - points[0]), axis=1).max() < 0.05


# --------------------------------------------------------------------------- over-segmentation
def two_colored_planes(spacing: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.arange(0, 1.0, spacing)
    x, y = np.meshgrid(g, g, indexing="ij")
    floor = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)
    wall = np.stack([x.ravel(), np.zeros(x.size), y.ravel() + spacing], 1)  # vertical, 90 deg to the floor
    points = np.concatenate([floor, wall])
    truth = np.r_[np.zeros(len(floor), int), np.ones(len(wall), int)]
    # the floor has a red and a blue half: a colour boundary inside one plane
    colors = np.where((points[:, 0] < 0.5)[:, None] & (truth == 0)[:, None], [220, 30, 30], [30, 30, 220])
    truth[(truth == 0) & (points[:, 0] < 0.5)] = 2
    return points, colors.astype(np.uint8), truth


def test_overseg_separates_geometry_and_color_boundaries():
    points, colors, truth = two_colored_planes()
    segments = oversegment(points, colors, None, OversegConfig(min_size=20))
    # segments stay inside one true part (PCA normals blur the crease: a few points there may
    # leak), and parts are not shattered: each is mostly one segment
    majority = sum(np.bincount(truth[segments == s]).max() for s in np.unique(segments))
    assert majority / len(points) > 0.99
    for part in range(3):
        assert np.bincount(segments[truth == part]).max() / (truth == part).sum() > 0.9
    assert len(np.unique(segments)) <= 12
    assert np.bincount(segments).min() >= 20  # small segments were absorbed
    assert segments.min() == 0 and segments.max() == len(np.unique(segments)) - 1


def test_pca_normals_of_planes():
    points, _, truth = two_colored_planes()
    normals = estimate_normals(points, 16)
    inside = (points[:, 0] > 0.1) & (points[:, 0] < 0.9) & (points[:, 1] > 0.1) & (points[:, 2] > 0.1)
    assert np.allclose(np.abs(normals[(truth != 1) & inside][:, 2]), 1.0, atol=1e-3)
    assert np.allclose(np.abs(normals[(truth == 1) & inside][:, 1]), 1.0, atol=1e-3)


def test_felzenszwalb_predicate_on_a_path_graph():
    # 0-1-2 (weights 0.1, 0.1) | heavy edge 5.0 | 3-4 (0.1): threshold 1 joins the light edges only
    a, b, w = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), np.array([0.1, 0.1, 5.0, 0.1])
    labels = felzenszwalb_graph(5, a, b, w, threshold=1.0)
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] and labels[2] != labels[3]
    # min_size 4 absorbs the pair {3, 4} through its lightest edge
    labels = felzenszwalb_graph(5, a, b, w, threshold=1.0, min_size=4)
    assert len(np.unique(labels)) == 1


# ---------------------------------------------------------------------------------- sources
def test_the_evaluation_scan_is_refused_by_path_and_by_copy(scannet_npz, tmp_path):
    with pytest.raises(EvaluationDataError, match="evaluation"):
        discover_sources([scannet_npz])
    with pytest.raises(EvaluationDataError):
        discover_sources([scannet_npz.parent])
    copy = tmp_path / "innocent_name.npz"
    shutil.copyfile(scannet_npz, copy)
    with pytest.raises(EvaluationDataError, match="copy"):
        discover_sources([tmp_path])


def test_discover_bags_files_and_folders(tmp_path):
    bags = write_recordings(tmp_path / "bags", 2)
    npz = write_npz_scans(tmp_path / "scans", 1)
    (tmp_path / "scans" / "notes.txt").write_text("ignored")
    found = discover_sources([tmp_path])
    assert [s.kind for s in found] == ["bag", "bag", "file"]
    assert {s.path for s in found} == {*bags, *npz}
    mcap = next(bags[0].glob("*.mcap"))
    assert discover_sources([mcap]) == [Source(bags[0], "bag")]
    with pytest.raises(NoTrainingDataError):
        discover_sources([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoTrainingDataError):
        discover_sources([tmp_path / "empty"])


def test_bag_source_uses_the_last_fused_cloud_and_its_annotations(tmp_path):
    bag = write_recordings(tmp_path, 1, seed=4)[0]
    loaded = load_source(Source(bag, "bag"))
    scan, annotations = make_room(4)
    assert len(loaded.scan) == len(scan)  # the complete map, not the first (half) cloud
    assert np.array_equal(loaded.scan.instances, scan.instances)
    assert loaded.annotations == annotations


# --------------------------------------------------------------------------- scene preparation
def fake_encode(texts, kinds):
    out = np.zeros((len(texts), 16), np.float32)
    for i, text in enumerate(texts):
        out[i, hash(text) % 16] = 1.0
    return out


def test_prepared_scene_entities_and_texts(tmp_path):
    bag = write_recordings(tmp_path, 1, seed=2)[0]
    loaded = load_source(Source(bag, "bag"))
    scene = prepare_scene(loaded, SceneConfig(voxel_size=0.02), fake_encode, 16)
    assert scene.entity_source == "instances"
    assert scene.num_entities == 1 + 6  # floor, two walls, three objects
    # grid sampling: one real point per 2 cm voxel
    assert voxelize(scene.points, 0.02).num_voxels == len(scene.points) == voxelize(loaded.scan.points, 0.02).num_voxels
    assert np.isin(scene.points.view("f4,f4,f4"), loaded.scan.points.view("f4,f4,f4")).all()
    # "wall" names both walls (a multi-entity text); each caption names one entity
    wall = scene.texts.index("wall")
    assert sorted(scene.match_entity[scene.match_text == wall]) == [2, 3]
    caption = scene.texts.index("the floor of the room")
    assert list(scene.match_entity[scene.match_text == caption]) == [1]
    assert scene.text_embeddings.shape == (len(scene.texts), 16)
    # only captions: categories and referrals left out
    only = prepare_scene(loaded, SceneConfig(texts=("captions",)), fake_encode, 16)
    assert "wall" not in only.texts and "the wall of the room" in only.texts
    assert not any(t.startswith("the ") and "near" in t for t in only.texts)


def test_scans_without_instances_use_overseg_and_skip_language(tmp_path):
    path = write_npz_scans(tmp_path, 1, annotated=True)[0]
    loaded = load_source(Source(path, "file"))
    loaded.scan.instances = None
    scene = prepare_scene(loaded, SceneConfig(), fake_encode, 16)
    assert scene.entity_source == "overseg"
    # every point in a segment, but for isolated specks smaller than min_entity_points (background)
    assert scene.num_entities > 3 and (scene.entity > 0).mean() > 0.99
    assert not scene.has_language  # segments carry no names
    # instances without a sidecar: instance entities, no language
    path2 = write_npz_scans(tmp_path / "plain", 1, annotated=False)[0]
    scene2 = prepare_scene(load_source(Source(path2, "file")), SceneConfig(), None, 16)
    assert scene2.entity_source == "instances" and not scene2.has_language


def test_prepare_scenes_caches_by_content(tmp_path):
    sources = discover_sources(write_npz_scans(tmp_path / "scans", 2))
    calls = []

    def factory():
        calls.append(1)
        return fake_encode

    files = prepare_scenes(sources, SceneConfig(), tmp_path / "cache", factory, {"id": "fake"}, 16)
    assert len(files) == 2 and all(f.is_file() for f in files) and len(calls) == 1
    again = prepare_scenes(sources, SceneConfig(), tmp_path / "cache", factory, {"id": "fake"}, 16)
    assert again == files and len(calls) == 1  # cached: no encoder needed
    other = prepare_scenes(sources, SceneConfig(voxel_size=0.04), tmp_path / "cache", factory, {"id": "fake"}, 16)
    assert set(other).isdisjoint(files)
    scene = TrainingScene.load(files[0])
    assert scene.has_language and scene.points.dtype == np.float32


def test_parse_annotation_layouts():
    nested = {
        "entities": {"3": {"category": "chair", "captions": ["a chair"], "referrals": [{"text": "the left chair"}]}}
    }
    flat = {"3": {"category": "chair", "captions": "a chair", "referrals": ["the left chair"]}, "version": 2}
    listed = {"entities": [{"id": 3, "category": "chair", "captions": ["a chair"], "referrals": ["the left chair"]}]}
    for layout in (nested, flat, listed):
        parsed = parse_annotations(layout)
        assert list(parsed) == [3]
        assert (
            parsed[3].category == "chair"
            and parsed[3].captions == ["a chair"]
            and parsed[3].referrals == ["the left chair"]
        )
    with pytest.raises(ValueError):
        parse_annotations({"entities": [{"category": "chair"}]})


def test_dataset_items_are_a_function_of_the_key(tmp_path):
    sources = discover_sources(write_npz_scans(tmp_path / "scans", 2))
    files = prepare_scenes(sources, SceneConfig(), tmp_path / "cache", lambda: fake_encode, {"id": "fake"}, 16)
    dataset = MPECDataset(files, 0.02, ViewConfig(max_points=2000), seed=3)
    a, b, c = dataset[(0, 1)], dataset[(0, 1)], dataset[(1, 1)]
    assert np.array_equal(a.views[0].features, b.views[0].features)
    assert not np.array_equal(a.views[0].coords, c.views[0].coords) or not np.array_equal(a.entity, c.entity)
    assert 0.35 * 2000 - 1 <= len(a.entity) <= 2000  # ball crop, then thinned (augment.keep_ratio)
    dense = MPECDataset(files, 0.02, ViewConfig(max_points=2000, augment=AugmentConfig(keep_ratio=(1.0, 1.0))), seed=3)
    assert len(dense[(0, 1)].entity) == 2000  # the ball crop alone
    assert a.match.shape == (len(a.text_embeddings), a.num_entities) and a.match.any(axis=1).all()
    assert not a.match[:, 0].any()  # the background entity is never named
    assert json.dumps(a.source)


def test_thinning_keeps_a_random_fraction_and_both_views_share_it():
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(200):
        keep = thin_points(10_000, (0.35, 1.0), rng)
        kept = 10_000 if keep is None else len(keep)
        if keep is not None:
            assert np.all(np.diff(keep) > 0) and keep[-1] < 10_000  # sorted, distinct, in range
        sizes.append(kept)
    sizes = np.array(sizes) / 10_000
    assert sizes.min() >= 0.35 - 1e-4 and sizes.max() <= 1.0
    assert sizes.min() < 0.45 and sizes.max() > 0.9 and 0.6 < sizes.mean() < 0.75  # uniform over the range
    assert thin_points(10_000, (1.0, 1.0), rng) is None  # off: no draw, no subset
    assert thin_points(50, (0.35, 1.0), rng) is None  # tiny scans are left whole
    with pytest.raises(ValueError):
        AugmentConfig(keep_ratio=(0.0, 1.0))
