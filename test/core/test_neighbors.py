"""k nearest voxels (k-d tree and grid hash against brute force) and grid adjacency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ov3d_ros.core.neighbors import grid_neighbors, knn_voxels
from ov3d_ros.core.voxel import voxelize


@pytest.fixture(scope="module")
def scan_centers(scannet_npz) -> tuple[np.ndarray, float]:
    # a full-density corner of the room (~5k voxels), so brute force stays quick
    v = voxelize(np.load(scannet_npz)["xyz"], 0.02)
    corner = v.centers[(v.centers[:, 0] < -3.0) & (v.centers[:, 1] < 0.5)]
    return corner, v.voxel_size


def _assert_same_knn(result, expected, same_rule: bool = False):
    """``same_rule``: both follow the tie rule (grid, brute): identical indices. Otherwise (k-d
    tree) distances agree up to the rule's tolerance (near-ties, squared distances within 1e-3 of
    a squared cell, are ordered by index there) and indices almost everywhere."""
    if same_rule:
        np.testing.assert_array_equal(result.indices, expected.indices)
        np.testing.assert_allclose(result.distances, expected.distances, atol=1e-6)
        return
    np.testing.assert_allclose(result.distances, expected.distances, atol=1e-4)
    assert (np.asarray(result.indices) == np.asarray(expected.indices)).mean() > 0.999


@pytest.mark.parametrize("k", [1, 8, 24])
def test_kdtree_and_grid_equal_brute_force_on_a_real_scan(scan_centers, k):
    centers, voxel_size = scan_centers
    brute = knn_voxels(centers, k, method="brute")
    _assert_same_knn(knn_voxels(centers, k, method="kdtree"), brute)
    _assert_same_knn(
        knn_voxels(centers, k, method="grid", cell_size=voxel_size),
        knn_voxels(centers, k, method="brute", cell_size=voxel_size),
        same_rule=True,
    )
    _assert_same_knn(knn_voxels(centers, k, method="grid"), brute, same_rule=True)  # cell size estimated


def test_grid_is_exact_where_its_first_radius_is_not_enough():
    # a dense blob plus far, isolated points: their neighbours lie many cells away, which
    # needs the growing-radius rounds and the brute-force fallback
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.random((2000, 3)), rng.random((5, 3)) * 50 + 10]).astype(np.float32)
    brute = knn_voxels(points, 10, method="brute", cell_size=0.05)
    _assert_same_knn(knn_voxels(points, 10, method="grid", cell_size=0.05), brute, same_rule=True)


def test_self_is_first_and_can_be_left_out():
    rng = np.random.default_rng(1)
    points = rng.random((300, 3)).astype(np.float32)
    points[1] = points[0]  # a duplicate must not push a point out of its own list
    with_self = knn_voxels(points, 6)
    np.testing.assert_array_equal(with_self.indices[:, 0], np.arange(300))
    np.testing.assert_array_equal(with_self.distances[:, 0], 0)
    assert with_self.indices[0, 1] == 1 and with_self.indices[1, 1] == 0
    without = knn_voxels(points, 6, include_self=False)
    assert not (without.indices == np.arange(300)[:, None]).any()
    np.testing.assert_array_equal(without.indices[2:], knn_voxels(points, 7).indices[2:, 1:])
    for method in ("grid", "brute"):  # the k-d tree's order within near-ties may differ (tie rule)
        other = knn_voxels(points, 6, include_self=False, method=method)
        np.testing.assert_allclose(other.distances, without.distances, atol=1e-4)


def test_distances_are_sorted_and_types_follow_the_input():
    points = np.random.default_rng(2).random((500, 3)).astype(np.float32)
    result = knn_voxels(points, 9)
    assert isinstance(result.indices, np.ndarray) and result.indices.dtype == np.int64
    assert result.distances.dtype == np.float32 and result.indices.shape == (500, 9)
    assert np.all(np.diff(result.distances, axis=1) >= 0)
    as_torch = knn_voxels(torch.from_numpy(points), 9)
    assert isinstance(as_torch.indices, torch.Tensor) and as_torch.indices.dtype == torch.int64
    np.testing.assert_array_equal(as_torch.indices.numpy(), result.indices)


def test_integer_coords_and_tiny_clouds():
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 3]], dtype=np.int32)
    result = knn_voxels(coords, 5)  # k clamped to the 3 voxels there are
    np.testing.assert_array_equal(result.indices, [[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    np.testing.assert_allclose(result.distances, [[0, 1, 3], [0, 1, 2], [0, 2, 3]])
    grid = knn_voxels(coords, 5, method="grid")
    np.testing.assert_array_equal(grid.indices, result.indices)
    assert knn_voxels(coords[:1], 4, include_self=False).indices.shape == (1, 0)
    assert knn_voxels(np.zeros((0, 3)), 4).indices.shape == (0, 0)
    with pytest.raises(ValueError, match="k must be"):
        knn_voxels(coords, 0)
    with pytest.raises(ValueError, match="method"):
        knn_voxels(coords, 2, method="octree")


def _brute_pairs(coords: np.ndarray, radius: int, connectivity: int) -> set[tuple[int, int]]:
    diff = np.abs(coords[:, None, :] - coords[None, :, :])
    close = diff.max(axis=2) <= radius
    if radius == 1:
        close &= diff.sum(axis=2) <= {6: 1, 18: 2, 26: 3}[connectivity]
    i, j = np.nonzero(np.triu(close, k=1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("radius, connectivity", [(1, 6), (1, 18), (1, 26), (2, 26)])
def test_grid_neighbors_equal_brute_force(radius, connectivity):
    rng = np.random.default_rng(radius * 100 + connectivity)
    coords = np.unique(rng.integers(-4, 5, size=(300, 3)), axis=0)
    src, dst = grid_neighbors(coords, radius, connectivity)
    found = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    assert len(found) == len(src)  # every pair once
    assert found == _brute_pairs(coords, radius, connectivity)


def test_grid_neighbors_of_a_full_cube():
    coords = np.array(list(itertools.product(range(3), repeat=3)))
    # 6-connected edges of a 3x3x3 block: 3 axes x 2 steps x 9 lines; 26-connected: all pairs
    # within Chebyshev distance 1
    assert len(grid_neighbors(coords, 1, 6)[0]) == 54
    assert len(grid_neighbors(coords, 1, 26)[0]) == len(_brute_pairs(coords, 1, 26)) == 158


def _rule_knn(points: np.ndarray, k: int, unit: float) -> np.ndarray:
    """The tie rule written out: order by squared distance rounded to 1e-3 cell^2, then index."""
    d2 = ((points[:, None, :].astype(np.float64) - points[None, :, :]) ** 2).sum(-1)
    rounded = np.floor(d2 / (1e-3 * unit * unit) + 0.5)
    columns = np.broadcast_to(np.arange(len(points)), d2.shape)
    order = np.lexsort((columns, rounded), axis=1)
    return order[:, :k]


@pytest.mark.parametrize("k", [4, 10, 20])
def test_ties_between_equidistant_voxels_go_to_the_lower_index(k):
    # voxel centres of a shuffled 9x9x4 block at 5 cm: every k cuts through a group of equally far
    # neighbours (6 at one voxel, 12 at sqrt 2, 8 at sqrt 3, ...), and float rounding makes the
    # "equal" distances differ in their last bits
    grid = np.stack(np.meshgrid(np.arange(9), np.arange(9), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(3)
    centers = ((grid[rng.permutation(len(grid))] + 0.5) * 0.05 + np.array([2.1, -3.3, 0.7])).astype(np.float32)
    expected = _rule_knn(centers, k, 0.05)
    for method in ("grid", "brute"):
        got = knn_voxels(centers, k, method=method, cell_size=0.05)
        np.testing.assert_array_equal(got.indices, expected)
    # the k-d tree finds the same distances; only its choice within a tie group may differ
    tree = knn_voxels(centers, k, method="kdtree")
    np.testing.assert_allclose(
        tree.distances, knn_voxels(centers, k, method="grid", cell_size=0.05).distances, atol=1e-6
    )
