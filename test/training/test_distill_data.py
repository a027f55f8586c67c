"""Distillation data: scan preparation (bags and files, cache, normals, refusals) and keyed items."""

from __future__ import annotations

import numpy as np
import pytest
from distill_support import VOXEL_SIZE, tiny_config
from mpec_synthetic import write_npz_scans, write_recordings

from ov3d_ros.core.voxel import voxelize
from ov3d_training.data.sources import discover_sources
from ov3d_training.distill.dataset import DistillDataset, collate_items
from ov3d_training.distill.scenes import DistillScene, ScanTooSmallError, prepare_scenes


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill_data")
    write_recordings(root / "bags", 1)
    write_npz_scans(root / "files", 1, annotated=False)
    sources = discover_sources([root / "bags", root / "files"])
    files = prepare_scenes(sources, root / "cache", VOXEL_SIZE, with_normals=False)
    return root, sources, files


def test_scans_keep_one_point_per_voxel_and_are_cached(prepared):
    root, sources, files = prepared
    assert [s.kind for s in sources] == ["bag", "file"] and len(files) == 2
    for path in files:
        scene = DistillScene.load(path)
        assert scene.normals is None and scene.colors.dtype == np.uint8
        assert voxelize(scene.points, VOXEL_SIZE).num_voxels == len(scene.points)  # one point per voxel
    stamps = [p.stat().st_mtime_ns for p in files]
    again = prepare_scenes(sources, root / "cache", VOXEL_SIZE, with_normals=False)
    assert again == files and [p.stat().st_mtime_ns for p in again] == stamps  # served from the cache
    # the bag's training scan is its last (complete) map cloud, not the first half-map
    assert len(DistillScene.load(files[0]).points) > 0.8 * len(DistillScene.load(files[1]).points)


def test_normals_only_when_asked_and_estimated_when_missing(prepared):
    root, sources, _ = prepared
    files = prepare_scenes(sources[1:], root / "cache_normals", VOXEL_SIZE, with_normals=True)
    scene = DistillScene.load(files[0])
    assert scene.normals is not None and scene.normals.shape == scene.points.shape
    np.testing.assert_allclose(np.linalg.norm(scene.normals, axis=1), 1.0, atol=1e-4)


def test_too_small_scans_are_refused_with_their_name(prepared):
    root, sources, _ = prepared
    with pytest.raises(ScanTooSmallError, match=str(sources[1].path.name)):
        prepare_scenes(sources[1:], root / "cache_small", VOXEL_SIZE, with_normals=False, min_voxels=10**7)


def _dataset(files, **sections):
    config = tiny_config(**sections)
    return DistillDataset(
        files, VOXEL_SIZE, config.data, config.pairs, config.loss, config.student.input_features, "rgb_height", seed=3
    )


def test_items_are_a_function_of_their_key(prepared):
    _, _, files = prepared
    dataset = _dataset(files)
    a, b, other_epoch = dataset[(2, 1)], _dataset(files)[(2, 1)], dataset[(3, 1)]
    for name in ("coords", "student_features", "anchors", "neighbors", "pool"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert not np.array_equal(a.anchors, other_epoch.anchors)
    assert a.teacher_features is None  # same feature set as the student's: not duplicated
    anchors = a.anchors
    assert len(np.unique(anchors)) == len(anchors) == 256 and np.all(np.diff(anchors) > 0)
    assert a.neighbors.shape == (256, 32) and not (a.neighbors == anchors[:, None]).any()
    assert a.pool.max() < a.num_voxels and not a.deterministic  # augmented
    batch = collate_items([a, other_epoch])
    assert batch.sizes == [a.num_voxels, other_epoch.num_voxels] and batch.offsets == [0, a.num_voxels]
    assert int(batch.batch_index.max()) == 1 and batch.semantic_rows() is None


def test_crops_bound_the_view_and_no_augmentation_makes_views_deterministic(prepared):
    _, _, files = prepared
    plain = _dataset(files, data={"augment": None})
    first, later = plain[(0, 0)], plain[(9, 0)]
    assert first.deterministic and later.deterministic
    np.testing.assert_array_equal(first.coords, later.coords)
    cropped = _dataset(files, data={"augment": None, "max_points": 1000})[(0, 0)]
    assert not cropped.deterministic and cropped.num_voxels <= 1000
    sampled = _dataset(files, loss={"semantic_voxels": 100})[(0, 0)]
    assert sampled.semantic_index is not None and len(np.unique(sampled.semantic_index)) == 100
