"""Voxelisation: maps and means on a hand example, permutation invariance, the cap, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ov3d_ros.core.voxel import VoxelCapWarning, voxelize


def _hand_cloud():
    # voxel size 1: three occupied cells, listed out of key order on purpose
    points = np.array(
        [
            [1.2, 0.5, 0.5],  # cell (1, 0, 0)
            [0.1, 0.1, 0.1],  # cell (0, 0, 0)
            [1.8, 0.7, 0.1],  # cell (1, 0, 0)
            [0.3, 0.2, 2.9],  # cell (0, 0, 2)
            [0.5, 0.9, 0.3],  # cell (0, 0, 0)
        ],
        dtype=np.float32,
    )
    colors = np.array([[255, 0, 0], [0, 0, 0], [0, 255, 0], [10, 20, 30], [100, 100, 100]], dtype=np.uint8)
    normals = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=np.float32)
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    return points, colors, normals, features


def test_hand_example_maps_and_means():
    points, colors, normals, features = _hand_cloud()
    v = voxelize(points, 1.0, colors=colors, normals=normals, features=features)
    # voxels in key order (x-major): (0,0,0), (0,0,2), (1,0,0)
    np.testing.assert_array_equal(v.coords, [[0, 0, 0], [0, 0, 2], [1, 0, 0]])
    assert v.coords.dtype == np.int32 and v.point_to_voxel.dtype == np.int64 and v.counts.dtype == np.int32
    np.testing.assert_array_equal(v.point_to_voxel, [2, 0, 2, 1, 0])
    np.testing.assert_array_equal(v.counts, [2, 1, 2])
    np.testing.assert_allclose(v.centers, [[0.3, 0.5, 0.2], [0.3, 0.2, 2.9], [1.5, 0.6, 0.3]], atol=1e-6)
    np.testing.assert_allclose(v.colors, np.array([[50, 50, 50], [10, 20, 30], [127.5, 127.5, 0]]) / 255, atol=1e-6)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(v.normals, [[0, 0, 1], [0, 0, 1], [s, s, 0]], atol=1e-6)
    np.testing.assert_allclose(v.features, [[5, 6], [6, 7], [2, 3]])
    np.testing.assert_array_equal(v.origin, [0, 0, 0])
    assert v.voxel_size == 1.0 and v.kept_points is None and v.dropped_voxels == 0
    np.testing.assert_array_equal(v.to_points(np.arange(3)), v.point_to_voxel)


def test_origin_is_on_the_grid_and_points_lie_in_their_voxels(scannet_npz):
    xyz = np.load(scannet_npz)["xyz"] - np.float32([10.0, -3.0, 0.0])  # negative coordinates too
    v = voxelize(xyz, 0.02)
    assert v.coords.min() == 0
    np.testing.assert_allclose(v.origin / 0.02, np.round(v.origin / 0.02), atol=1e-4)
    lower = v.origin + v.coords[v.point_to_voxel] * np.float32(0.02)
    assert np.all(xyz >= lower - 1e-5) and np.all(xyz < lower + 0.02 + 1e-5)
    assert v.counts.sum() == len(xyz) and np.array_equal(np.bincount(v.point_to_voxel), v.counts)
    # voxels are distinct and every centre lies in its own cell
    assert len(np.unique(v.coords, axis=0)) == v.num_voxels
    cell_lower = v.origin + v.coords * np.float32(0.02)
    assert np.all(v.centers >= cell_lower - 1e-5) and np.all(v.centers < cell_lower + 0.02 + 1e-5)


def test_permuting_points_gives_the_same_voxels(scannet_npz):
    data = np.load(scannet_npz)
    xyz, rgb = data["xyz"], data["rgb"]
    perm = np.random.default_rng(3).permutation(len(xyz))
    a = voxelize(xyz, colors=rgb)
    b = voxelize(xyz[perm], colors=rgb[perm])
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.centers, b.centers)  # bit-identical: float64 sums are exact
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.point_to_voxel[perm], b.point_to_voxel)


def test_float_colors_and_empty_cloud():
    points = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]], dtype=np.float32)
    v = voxelize(points, 0.05, colors=np.array([[0.2, 0.4, 1.0], [0.4, 0.0, 1.0]]))
    np.testing.assert_allclose(v.colors, [[0.3, 0.2, 1.0]], atol=1e-6)
    empty = voxelize(np.zeros((0, 3), np.float32), colors=np.zeros((0, 3), np.uint8), features=np.zeros((0, 4)))
    assert empty.num_voxels == 0 and empty.point_to_voxel.shape == (0,) and empty.features.shape == (0, 4)


def test_cap_warns_keeps_exactly_max_and_every_point_keeps_a_voxel(scannet_npz):
    xyz = np.load(scannet_npz)["xyz"][::4]
    full = voxelize(xyz, 0.05)
    cap = full.num_voxels // 3
    with pytest.warns(VoxelCapWarning, match=rf"{full.num_voxels} voxels.*max_voxels={cap}"):
        capped = voxelize(xyz, 0.05, max_voxels=cap)
    assert capped.num_voxels == cap and capped.dropped_voxels == full.num_voxels - cap
    assert capped.point_to_voxel.min() >= 0 and capped.point_to_voxel.max() < cap
    # kept voxels are a subset of the full ones with unchanged means and counts
    full_index = {tuple(c): i for i, c in enumerate(full.coords)}
    rows = np.array([full_index[tuple(c)] for c in capped.coords])
    np.testing.assert_array_equal(capped.centers, full.centers[rows])
    np.testing.assert_array_equal(capped.counts, full.counts[rows])
    # kept points are exactly those whose own voxel survived; the others go to the nearest kept centre
    own_voxel_kept = np.isin(full.point_to_voxel, rows)
    np.testing.assert_array_equal(capped.kept_points, np.flatnonzero(own_voxel_kept))
    np.testing.assert_array_equal(rows[capped.point_to_voxel[own_voxel_kept]], full.point_to_voxel[own_voxel_kept])
    dropped = np.flatnonzero(~own_voxel_kept)[:200]
    d = np.linalg.norm(xyz[dropped, None, :] - capped.centers[None], axis=2)
    chosen = np.linalg.norm(xyz[dropped] - capped.centers[capped.point_to_voxel[dropped]], axis=1)
    np.testing.assert_allclose(chosen, d.min(axis=1), atol=1e-6)
    # the same cloud keeps the same voxels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VoxelCapWarning)
        again = voxelize(xyz, 0.05, max_voxels=cap)
    np.testing.assert_array_equal(again.coords, capped.coords)


def test_no_warning_under_the_cap():
    points = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = voxelize(points, 0.5, max_voxels=8)
    assert v.num_voxels == 8 and v.kept_points is None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: voxelize(np.array([[0.0, np.nan, 0.0]])), "not finite"),
        (lambda: voxelize(np.zeros((4, 2))), r"\(N, 3\)"),
        (lambda: voxelize(np.zeros((4, 3)), 0.0), "positive"),
        (lambda: voxelize(np.zeros((4, 3)), colors=np.zeros((3, 3))), "colors"),
        (lambda: voxelize(np.zeros((4, 3)), max_voxels=0), "max_voxels"),
        (lambda: voxelize(np.array([[0.0, 0, 0], [1e5, 0, 0]]), 0.02), "spans"),
    ],
)
def test_bad_input_raises_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
