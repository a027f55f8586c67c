"""Connected components on the voxel grid and object boxes / statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ov3d_ros.core.neighbors import grid_neighbors
from ov3d_ros.core.objects import connected_components, extract_objects
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.io.files import load_scan


def test_components_on_a_hand_built_grid():
    coords = np.array(
        [
            [0, 0, 0],
            [1, 0, 0],
            [2, 0, 0],  # a bar
            [3, 1, 0],  # touches the bar's end only across an edge
            [6, 6, 6],
            [6, 6, 7],  # far away pair
            [9, 9, 9],  # isolated, and masked out below
        ]
    )
    mask = np.array([1, 1, 1, 1, 1, 1, 0], dtype=bool)
    ids26 = connected_components(coords, mask, 26)
    np.testing.assert_array_equal(ids26, [1, 1, 1, 1, 2, 2, 0])
    ids6 = connected_components(coords, mask, 6)
    np.testing.assert_array_equal(ids6, [1, 1, 1, 2, 3, 3, 0])
    assert ids26.dtype == np.int32
    # labels split touching voxels of different classes
    labels = np.array([1, 1, 2, 2, 1, 1, 1])
    np.testing.assert_array_equal(connected_components(coords, mask, 26, labels=labels), [1, 1, 2, 2, 3, 3, 0])
    # radius 2 bridges the one-cell gap between (6,6,7) and a voxel at (6,6,9)
    bridged = connected_components(np.vstack([coords, [[6, 6, 9]]]), None, 26, radius_cells=2)
    assert bridged[4] == bridged[7] and bridged[4] != bridged[0]
    assert not connected_components(coords, np.zeros(7, bool)).any()


@pytest.mark.parametrize("seed", range(4))
def test_cached_grid_edges_give_the_same_components_as_hashing(seed):
    """A re-query filters the cloud's cached adjacency: ids must equal a fresh computation exactly."""
    rng = np.random.default_rng(seed)
    coords = np.unique(rng.integers(0, 30, (2500, 3)), axis=0)  # ~9 % occupied: many components
    mask = rng.random(len(coords)) < 0.7
    labels = rng.integers(1, 4, len(coords))
    edges = grid_neighbors(coords)
    for kwargs in ({}, {"labels": labels}):
        fresh = connected_components(coords, mask, 26, **kwargs)
        cached = connected_components(coords, mask, 26, edges=edges, **kwargs)
        np.testing.assert_array_equal(cached, fresh)
        assert fresh.max() > 5  # a non-trivial partition


@pytest.mark.parametrize("connectivity, structure", [(6, 1), (26, 3)])
def test_components_equal_a_dense_labeling(connectivity, structure):
    rng = np.random.default_rng(connectivity)
    dense = rng.random((20, 20, 20)) < 0.25
    coords = np.argwhere(dense) + np.array([-5, 100, 3])  # anywhere on the grid
    ids = connected_components(coords, None, connectivity)
    expected, count = ndimage.label(dense, ndimage.generate_binary_structure(3, structure))
    assert ids.max() == count
    ref = expected[dense]
    # same partition: a one-to-one map between the two numberings
    pairs = np.unique(np.column_stack([ids, ref]), axis=0)
    assert len(pairs) == count == len(np.unique(pairs[:, 0])) == len(np.unique(pairs[:, 1]))


def _box_surface(center, size, yaw, n, rng):
    """Points on the faces of a box of the given size, yawed about z, then moved to center."""
    face = rng.integers(0, 6, n)
    local = (rng.random((n, 3)) - 0.5) * size
    axis, side = face // 2, face % 2
    local[np.arange(n), axis] = (side - 0.5) * np.asarray(size)[axis]
    c, s = np.cos(yaw), np.sin(yaw)
    world = local @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + center
    return world.astype(np.float32)


def test_axis_aligned_and_oriented_boxes_of_box_shaped_clouds():
    rng = np.random.default_rng(0)
    size = np.array([0.6, 0.3, 0.4])
    first = _box_surface([1.0, 2.0, 0.5], size, 0.0, 20000, rng)
    second = _box_surface([-1.0, -1.0, 0.3], size, np.deg2rad(30), 20000, rng)
    points = np.concatenate([first, second])
    v = voxelize(points, 0.02)
    semantic = np.where(v.centers[:, 0] > 0, 1, 2)
    score = np.where(semantic == 1, 0.9, 0.5)
    instance, objects = extract_objects(v, semantic, score, ["crate", "box"], points=points)
    assert [o.query for o in objects] == ["crate", "box"] and [o.instance_id for o in objects] == [1, 2]
    crate = objects[0]
    np.testing.assert_allclose(crate.center, [1.0, 2.0, 0.5], atol=2e-3)
    np.testing.assert_allclose(crate.size, size, atol=2e-3)
    np.testing.assert_array_equal(crate.orientation, [0, 0, 0, 1])
    np.testing.assert_allclose(crate.centroid, first.mean(0), atol=1e-5)
    assert crate.num_points == 20000 and crate.score == pytest.approx(0.9)
    np.testing.assert_array_equal(instance, semantic)

    _, oriented = extract_objects(v, semantic, score, ["crate", "box"], points=points, oriented=True)
    box = oriented[1]
    # PCA of 20k sampled points finds the yaw to a fraction of a degree
    np.testing.assert_allclose(box.center, [-1.0, -1.0, 0.3], atol=5e-3)
    np.testing.assert_allclose(box.size, size, atol=1e-2)  # long side first: PCA's major axis
    yaw = 2 * np.arctan2(box.orientation[2], box.orientation[3])
    assert np.cos(2 * (yaw - np.deg2rad(30))) > np.cos(np.deg2rad(2))  # a box is symmetric under 180 deg
    np.testing.assert_allclose(np.linalg.norm(box.orientation), 1, atol=1e-6)
    # the axis-aligned box of the yawed one is bigger than the box itself
    assert np.all(objects[1].size[:2] > size[:2])

    # without points: boxes from voxel cells, conservative by at most one voxel
    _, from_voxels = extract_objects(v, semantic, score, ["crate", "box"])
    assert np.all(from_voxels[0].size >= size - 1e-6) and np.all(from_voxels[0].size <= size + 0.04 + 1e-6)
    assert from_voxels[0].num_points == 20000
    np.testing.assert_allclose(from_voxels[0].centroid, first.mean(0), atol=1e-5)


def test_small_components_are_dropped_and_ids_are_unique_across_queries():
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [5, 5, 5], [9, 9, 9], [9, 9, 10]])
    points = coords.astype(np.float32) * 0.1 + 0.05
    v = voxelize(points, 0.1)
    semantic = np.array([1, 1, 1, 1, 2, 2])
    instance, objects = extract_objects(v, semantic, np.ones(6), ["a", "b"], min_voxels=2, min_points=1)
    np.testing.assert_array_equal(instance, [1, 1, 1, 0, 2, 2])
    assert [(o.query, o.semantic_id, o.num_points) for o in objects] == [("a", 1, 3), ("b", 2, 2)]
    _, none = extract_objects(v, semantic, np.ones(6), ["a", "b"], min_points=4)
    assert none == []
    with pytest.raises(ValueError, match="semantic ids"):
        extract_objects(v, semantic + 1, np.ones(6), ["a", "b"])
    empty = voxelize(np.zeros((0, 3), np.float32))
    inst, objs = extract_objects(empty, np.zeros(0, int), np.zeros(0), ["a"])
    assert inst.shape == (0,) and objs == []


def test_one_box_per_labeled_object_on_a_real_kinect_cloud(mosd_pcds):
    """With the ground-truth labels as the 'query' answer, each mOSD object becomes one box
    that contains the object's points (real sensor noise, occlusion edges, NaN holes)."""
    scan = load_scan(mosd_pcds[0])
    ids = np.unique(scan.instances[scan.instances >= 10])
    point_label = np.where(scan.instances >= 10, np.searchsorted(ids, scan.instances) + 1, 0)
    v = voxelize(scan.points, 0.01)
    votes = np.bincount(v.point_to_voxel * (len(ids) + 1) + point_label, minlength=v.num_voxels * (len(ids) + 1))
    semantic = votes.reshape(v.num_voxels, -1).argmax(1)
    names = [f"object {i}" for i in ids]
    _, objects = extract_objects(
        v, semantic, np.ones(v.num_voxels), names, points=scan.points, radius_cells=2, min_points=200
    )
    assert sorted(o.semantic_id for o in objects) == list(range(1, len(ids) + 1))
    for o in objects:
        inside = scan.points[point_label == o.semantic_id]
        assert np.all(np.abs(inside - o.center).max(0) <= o.size / 2 + 0.011)  # + one voxel of label noise
