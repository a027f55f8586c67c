"""Objects from labelled voxels: connected components per query, then boxes and statistics.

An object is a connected set of voxels carrying the same query label (26-connectivity on the
voxel grid by default; ``radius_cells=2`` bridges one-voxel gaps left by sensor dropout).
Components smaller than ``min_voxels`` voxels or ``min_points`` points are noise, not objects:
their voxels get instance 0.

Boxes are axis-aligned by default. ``oriented=True`` fits a box rotated about z -- the gravity
axis of a robot's map or base frame (clouds must be gravity-aligned for this to make sense):
the yaw is the principal axis of the object's xy spread (PCA), the extent is then exact in that
rotated frame. Orientation is a quaternion (x, y, z, w).

Box extents come from the object's points when ``points`` is given; otherwise from the cells
of its voxels, which is conservative (at most one voxel larger than the points' box).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as _csgraph_components

from .neighbors import grid_neighbors
from .types import DetectedObject
from .voxel import Voxels

DEFAULT_MIN_POINTS = 20
DEFAULT_MIN_VOXELS = 5
_IDENTITY = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)


def connected_components(
    coords: np.ndarray,
    mask: np.ndarray | None = None,
    connectivity: int = 26,
    *,
    labels: np.ndarray | None = None,
    radius_cells: int = 1,
    edges: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(V,) int32 component ids: 0 = not in ``mask``, then 1, 2, ... (numbered by lowest voxel).

    coords:       (V, 3) integer grid indices of distinct voxels.
    mask:         (V,) bool, voxels to group (default: all).
    connectivity: 6, 18 or 26 (for ``radius_cells`` = 1).
    labels:       (V,) ints: when given, only voxels with equal labels are linked, so one call
                  separates every class at once.
    radius_cells: link voxels up to this many cells apart along each axis.
    edges:        ``grid_neighbors(coords, radius_cells, connectivity)`` of *all* voxels, if the
                  caller has it: a cloud's grid does not change between queries, so a re-query
                  only filters these pairs instead of hashing the grid again.

    Graph built by hashing neighbour offsets (no dense grid, whatever the scene's extent);
    components by ``scipy.sparse.csgraph``.
    """
    coords = np.asarray(coords)
    total = len(coords)
    mask = np.ones(total, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    if len(mask) != total:
        raise ValueError(f"mask has {len(mask)} entries for {total} voxels")
    members = np.flatnonzero(mask)
    ids = np.zeros(total, dtype=np.int32)
    if len(members) == 0:
        return ids
    if edges is None:
        src, dst = grid_neighbors(coords[members], radius_cells=radius_cells, connectivity=connectivity)
    else:  # pairs over all voxels -> pairs among the members, in member numbering
        src, dst = (np.asarray(e) for e in edges)
        inside = mask[src] & mask[dst]
        local = np.full(total, -1, dtype=np.int64)
        local[members] = np.arange(len(members))
        src, dst = local[src[inside]], local[dst[inside]]
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != total:
            raise ValueError(f"labels has {len(labels)} entries for {total} voxels")
        same = labels[members[src]] == labels[members[dst]]
        src, dst = src[same], dst[same]
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(len(members), len(members)))
    _, component = _csgraph_components(graph, directed=False)
    ids[members] = component.astype(np.int32) + 1
    return ids


def extract_objects(
    voxels: Voxels,
    voxel_semantic: np.ndarray,
    voxel_score: np.ndarray,
    query_names: list[str] | tuple[str, ...],
    *,
    min_points: int = DEFAULT_MIN_POINTS,
    min_voxels: int = DEFAULT_MIN_VOXELS,
    oriented: bool = False,
    connectivity: int = 26,
    radius_cells: int = 1,
    points: np.ndarray | None = None,
    grid_edges: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[DetectedObject]]:
    """Instances of every query and their boxes.

    voxel_semantic: (V,) ints, 1 + query index, 0 = background.
    voxel_score:    (V,) float score of the voxel's label.
    query_names:    names of the positive queries (semantic id s is query_names[s - 1]).
    points:         (N, 3) the voxelised points (same order as ``voxels.point_to_voxel``): exact
                    boxes, and statistics over every point (cap-reassigned ones included);
                    without them, statistics come from the voxels' member counts.
    grid_edges:     the voxels' ``grid_neighbors`` for this connectivity / radius, when cached
                    (see :func:`connected_components`).

    Returns ``voxel_instance`` (V,) int32 (0 = none; ids 1..M unique across queries, ordered by
    semantic id, then by point count, largest first) and the M objects in id order.
    """
    total = voxels.num_voxels
    semantic = np.asarray(voxel_semantic).reshape(-1).astype(np.int64)
    score = np.asarray(voxel_score, dtype=np.float64).reshape(-1)
    if len(semantic) != total or len(score) != total:
        raise ValueError(f"voxel_semantic ({len(semantic)}) and voxel_score ({len(score)}) must have {total} entries")
    if total and (semantic.min() < 0 or semantic.max() > len(query_names)):
        raise ValueError(
            f"semantic ids must be in 0..{len(query_names)} (one per query name), got {semantic.min()}..{semantic.max()}"
        )
    instance = np.zeros(total, dtype=np.int32)
    if total == 0:
        return instance, []

    component = connected_components(
        voxels.coords, semantic > 0, connectivity, labels=semantic, radius_cells=radius_cells, edges=grid_edges
    )
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (voxels.num_points, 3):
            raise ValueError(f"points must be ({voxels.num_points}, 3) as voxelised, got {points.shape}")
        point_component = component[voxels.point_to_voxel]
        weight = np.bincount(voxels.point_to_voxel, minlength=total)  # points per voxel, all of them
    else:
        weight = voxels.counts.astype(np.int64)
    n_comp = int(component.max())
    comp_voxels = np.bincount(component, minlength=n_comp + 1)
    comp_points = np.bincount(component, weights=weight, minlength=n_comp + 1)
    comp_semantic = np.zeros(n_comp + 1, dtype=np.int64)
    comp_semantic[component] = semantic
    keep = (comp_voxels >= min_voxels) & (comp_points >= max(min_points, 1))
    keep[0] = False
    kept = np.flatnonzero(keep)
    if len(kept) == 0:
        return instance, []
    kept = kept[np.lexsort((-comp_points[kept], comp_semantic[kept]))]
    new_id = np.zeros(n_comp + 1, dtype=np.int32)
    new_id[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    instance = new_id[component]
    count = len(kept)

    # statistics over the points, or counts-weighted over voxels (centres are their points' means)
    num_points = comp_points[kept].astype(np.int64)
    if points is not None:
        stat_id, stat_xyz, stat_score = new_id[point_component], points, score[voxels.point_to_voxel]
        stat_weight = np.ones(len(points))
    else:
        stat_id, stat_xyz, stat_score = instance, voxels.centers.astype(np.float64), score
        stat_weight = weight.astype(np.float64)
    sums = _group_sum(stat_id, np.column_stack([stat_xyz, stat_score]) * stat_weight[:, None], count)
    centroid = sums[:, :3] / num_points[:, None]
    mean_score = sums[:, 3] / num_points

    # box samples: the points themselves, or the 8 corners of every voxel cell
    if points is not None:
        sample_xyz, sample_id = points, new_id[point_component]
    else:
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
        lower = voxels.origin.astype(np.float64) + voxels.coords.astype(np.float64) * voxels.voxel_size
        sample_xyz = (lower[:, None, :] + corners[None] * voxels.voxel_size).reshape(-1, 3)
        sample_id = np.repeat(instance, 8)
    inside = sample_id > 0
    sample_xyz, sample_id = sample_xyz[inside], sample_id[inside]
    if oriented:
        yaw = _principal_yaw(sample_xyz, sample_id, count)
        center, size = _yawed_box(sample_xyz, sample_id, yaw, count)
        orientation = np.zeros((count, 4))
        orientation[:, 2], orientation[:, 3] = np.sin(yaw / 2), np.cos(yaw / 2)
    else:
        low, high = _group_min_max(sample_xyz, sample_id, count)
        center, size = (low + high) / 2, high - low
        orientation = np.tile(_IDENTITY, (count, 1))

    objects = [
        DetectedObject(
            query=str(query_names[comp_semantic[c] - 1]),
            semantic_id=int(comp_semantic[c]),
            instance_id=i + 1,
            center=center[i].astype(np.float32),
            size=size[i].astype(np.float32),
            orientation=orientation[i].astype(np.float32),
            centroid=centroid[i].astype(np.float32),
            num_points=int(num_points[i]),
            score=float(mean_score[i]),
        )
        for i, c in enumerate(kept)
    ]
    return instance, objects


# ----------------------------------------------------------------------------------- internals
def _group_sum(group: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """Sum of rows of ``values`` per group id 1..count (id 0 ignored): (count, C)."""
    out = np.zeros((count + 1, values.shape[1]))
    for column in range(values.shape[1]):  # a few columns; bincount is the fast scatter-add
        out[:, column] = np.bincount(group, weights=values[:, column], minlength=count + 1)
    return out[1:]


def _group_min_max(values: np.ndarray, group: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group column-wise min and max for group ids 1..count, every group non-empty."""
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(1, count + 1))
    ordered = values[order]
    return np.minimum.reduceat(ordered, starts, axis=0), np.maximum.reduceat(ordered, starts, axis=0)


def _principal_yaw(xyz: np.ndarray, group: np.ndarray, count: int) -> np.ndarray:
    """Angle of the major axis of each group's xy covariance, in (-pi/2, pi/2]."""
    n = np.bincount(group, minlength=count + 1)[1:].astype(np.float64)
    mean = _group_sum(group, xyz[:, :2], count) / n[:, None]
    d = xyz[:, :2] - np.vstack([np.zeros((1, 2)), mean])[group]
    cov = _group_sum(group, np.stack([d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]], axis=1), count)
    return 0.5 * np.arctan2(2 * cov[:, 2], cov[:, 0] - cov[:, 1])


def _yawed_box(xyz: np.ndarray, group: np.ndarray, yaw: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight box in each group's yawed frame: world centre (count, 3) and size (count, 3)."""
    cos, sin = np.cos(yaw)[group - 1], np.sin(yaw)[group - 1]
    local = np.stack([xyz[:, 0] * cos + xyz[:, 1] * sin, -xyz[:, 0] * sin + xyz[:, 1] * cos, xyz[:, 2]], axis=1)
    low, high = _group_min_max(local, group, count)
    mid = (low + high) / 2
    c, s = np.cos(yaw), np.sin(yaw)
    center = np.stack([mid[:, 0] * c - mid[:, 1] * s, mid[:, 0] * s + mid[:, 1] * c, mid[:, 2]], axis=1)
    return center, high - low
