"""Voxelisation: points -> occupied voxels, with maps both ways and per-voxel means.

Everything is vectorised around one stable sort of packed int64 voxel keys:

* voxels come out ordered by key (x-major), so the voxel order -- and everything computed on
  voxels downstream (kNN, pooling, connected components) -- does not depend on the order of the
  input points;
* positions, colours and normals are summed with ``np.add.reduceat`` over the sorted points in
  float64 (int64 for uint8 colours): float32 inputs summed in float64 are exact in practice, so
  these means are bit-identical for any permutation of the input points. Wide features (D in the
  hundreds) are summed in float32 with torch's ``index_add_`` for speed (last-bit differences
  between permutations are possible there).

The voxel cap (``max_voxels``)
------------------------------
A fused map can grow without bound; the network and GGP cost grow with the voxel count. When a
cloud occupies more than ``max_voxels`` voxels, ``voxelize`` keeps a uniform random subset of
exactly ``max_voxels`` voxels (fixed seed: the same cloud always keeps the same voxels) and warns
with a :class:`VoxelCapWarning` naming the numbers. Why subsample rather than coarsen: the
network was trained at one voxel size and its convolution kernels are measured in voxels, so a
coarser grid silently changes what it sees; a uniform subset keeps the trained resolution and
keeps support everywhere in the scene. The maps stay valid:

* ``point_to_voxel`` is defined for every input point: points of dropped voxels take the
  nearest kept voxel (by distance to its centre), so every point still gets an answer;
* ``kept_points`` lists the points whose own voxel was kept -- the points that the per-voxel
  means (and ``counts``) are made of; it is ``None`` when nothing was dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

DEFAULT_VOXEL_SIZE = 0.02  # metres
CAP_SEED = 0  # the voxel cap's subsample is reproducible
_KEY_BITS = 21  # bits per axis in the packed key: 2**21 cells = 42 km at 2 cm
_MAX_CELLS = 1 << _KEY_BITS


class VoxelCapWarning(RuntimeWarning):
    """A cloud had more voxels than ``max_voxels``; some were dropped (see :func:`voxelize`)."""


@dataclass
class Voxels:
    """Occupied voxels of one cloud.

    coords:         (V, 3) int32 grid indices, >= 0; voxel i spans
                    ``origin + coords[i] * voxel_size`` .. ``+ voxel_size``.
    point_to_voxel: (N,) int64 voxel of each input point (always valid, see the module doc).
    counts:         (V,) int32 number of points averaged into each voxel.
    centers:        (V, 3) float32 mean of the member points (metres).
    colors:         (V, 3) float32 mean colour in [0, 1], or None.
    normals:        (V, 3) float32 mean normal re-normalised to unit length (zero where the
                    members' normals cancel or one of them is not finite), or None.
    features:       (V, D) float32 mean feature, or None.
    voxel_size:     edge length in metres.
    origin:         (3,) float32 world position of the corner of cell (0, 0, 0); a multiple of
                    ``voxel_size``, so grids of different clouds line up.
    kept_points:    (M,) int64 indices of the points whose voxel survived the cap, or None
                    when no voxel was dropped.
    dropped_voxels: how many voxels the cap dropped (0 = none).
    """

    coords: np.ndarray
    point_to_voxel: np.ndarray
    counts: np.ndarray
    centers: np.ndarray
    colors: np.ndarray | None
    normals: np.ndarray | None
    features: np.ndarray | None
    voxel_size: float
    origin: np.ndarray
    kept_points: np.ndarray | None = None
    dropped_voxels: int = 0

    @property
    def num_voxels(self) -> int:
        return len(self.coords)

    @property
    def num_points(self) -> int:
        return len(self.point_to_voxel)

    def to_points(self, values):
        """Per-voxel values (V, ...) -> per-point values (N, ...) through ``point_to_voxel``.

        Works for numpy arrays and torch tensors (the index is moved to the tensor's device).
        """
        if hasattr(values, "device") and not isinstance(values, np.ndarray):
            import torch  # local: voxel.py itself has no torch dependency

            return values[torch.as_tensor(self.point_to_voxel, device=values.device)]
        return np.asarray(values)[self.point_to_voxel]


def voxelize(
    points: np.ndarray,
    voxel_size: float = DEFAULT_VOXEL_SIZE,
    *,
    colors: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    features: np.ndarray | None = None,
    max_voxels: int | None = None,
) -> Voxels:
    """Group points into occupied voxels of edge ``voxel_size`` metres.

    points:   (N, 3) finite coordinates (filter NaNs first: io's ``skip_nans`` does).
    colors:   (N, 3) uint8 0..255 or float 0..1.
    normals:  (N, 3) unit normals.
    features: (N, D) per-point features.
    max_voxels: cap on the voxel count (None = no cap); see the module doc for the policy.

    Raises ValueError for malformed input (wrong shapes, non-finite points, a non-positive voxel
    size, or a cloud spanning more than 2**21 voxels along an axis). An empty cloud gives V = 0.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    voxel_size = float(voxel_size)
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size}")
    if max_voxels is not None and int(max_voxels) < 1:
        raise ValueError(f"max_voxels must be >= 1 or None, got {max_voxels}")
    n = len(points)
    colors = _check_per_point("colors", colors, n, 3)
    normals = _check_per_point("normals", normals, n, 3)
    features = _check_per_point("features", features, n, None)
    if n and not np.isfinite(points).all():
        bad = int((~np.isfinite(points).all(axis=1)).sum())
        raise ValueError(f"{bad} of {n} points are not finite (NaN/inf); drop them before voxelising")

    cells = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    lowest = cells.min(axis=0) if n else np.zeros(3, np.int64)
    local = cells - lowest
    if n and local.max() >= _MAX_CELLS:
        extent = (points.max(axis=0) - points.min(axis=0)).max()
        raise ValueError(
            f"cloud spans {extent:.1f} m, more than {_MAX_CELLS} voxels of {voxel_size} m along an axis; "
            "crop it or use a larger voxel size"
        )
    keys = (local[:, 0] << (2 * _KEY_BITS)) | (local[:, 1] << _KEY_BITS) | local[:, 2]

    # One stable sort: voxel order = key order; members of a voxel keep their input order.
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = np.flatnonzero(is_first)
    point_to_voxel = np.empty(n, dtype=np.int64)
    point_to_voxel[order] = np.cumsum(is_first) - 1
    counts = np.diff(np.append(starts, n)).astype(np.int64)

    def mean(values: np.ndarray, accumulate=np.float64) -> np.ndarray:
        if not n:
            return np.zeros((0, values.shape[1]), dtype=np.float64)
        sums = np.add.reduceat(values[order], starts, axis=0, dtype=accumulate)
        return sums / counts[:, None]

    coords = local[order[starts]].astype(np.int32)
    centers = mean(points).astype(np.float32)
    voxel_colors = None
    if colors is not None:
        if colors.dtype == np.uint8:
            voxel_colors = (mean(colors, np.int64) / 255.0).astype(np.float32)
        else:
            voxel_colors = np.clip(mean(colors), 0.0, 1.0).astype(np.float32)
    voxel_normals = None
    if normals is not None:
        summed = mean(normals)
        length = np.linalg.norm(summed, axis=1, keepdims=True)
        voxel_normals = np.divide(summed, length, out=np.zeros_like(summed), where=length > 1e-12).astype(np.float32)
    voxel_features = None if features is None else _feature_mean(features, point_to_voxel, counts)

    voxels = Voxels(
        coords=coords,
        point_to_voxel=point_to_voxel,
        counts=counts.astype(np.int32),
        centers=centers,
        colors=voxel_colors,
        normals=voxel_normals,
        features=voxel_features,
        voxel_size=voxel_size,
        origin=(lowest * voxel_size).astype(np.float32),
    )
    if max_voxels is not None and voxels.num_voxels > int(max_voxels):
        voxels = _apply_cap(voxels, points, int(max_voxels))
    return voxels


def _apply_cap(voxels: Voxels, points: np.ndarray, max_voxels: int) -> Voxels:
    """Keep a reproducible uniform random ``max_voxels`` of the voxels (module doc: why)."""
    total = voxels.num_voxels
    keep = np.sort(np.random.default_rng(CAP_SEED).choice(total, size=max_voxels, replace=False))
    new_index = np.full(total, -1, dtype=np.int64)
    new_index[keep] = np.arange(max_voxels)
    point_to_voxel = new_index[voxels.point_to_voxel]
    dropped = point_to_voxel < 0
    kept_points = np.flatnonzero(~dropped)
    if dropped.any():
        from scipy.spatial import cKDTree  # only needed on this path

        centers = voxels.centers[keep]
        _, nearest = cKDTree(centers).query(points[dropped], k=1, workers=-1)
        point_to_voxel[dropped] = nearest
    warnings.warn(
        f"voxelize: cloud has {total} voxels of {voxels.voxel_size} m, more than max_voxels={max_voxels}; "
        f"kept a uniform random {max_voxels} (seed {CAP_SEED}), dropped {total - max_voxels}; "
        f"{int(dropped.sum())} of {len(points)} points take the nearest kept voxel",
        VoxelCapWarning,
        stacklevel=3,
    )
    pick = lambda a: None if a is None else a[keep]
    return Voxels(
        coords=voxels.coords[keep],
        point_to_voxel=point_to_voxel,
        counts=voxels.counts[keep],
        centers=voxels.centers[keep],
        colors=pick(voxels.colors),
        normals=pick(voxels.normals),
        features=pick(voxels.features),
        voxel_size=voxels.voxel_size,
        origin=voxels.origin,
        kept_points=kept_points,
        dropped_voxels=total - max_voxels,
    )


def _feature_mean(features: np.ndarray, point_to_voxel: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Wide per-voxel means with torch's index_add, which is far faster than ``np.add.reduceat``
    for D in the hundreds (D = 384 for lifted features).

    Sums are float32 (exact float64 sums cost several times more at this width), so unlike the
    narrow means above they may differ in the last bits between permutations of the same points.
    """
    import torch  # local: the narrow path above needs numpy only

    sums = torch.zeros((len(counts), features.shape[1]), dtype=torch.float32)
    sums.index_add_(0, torch.from_numpy(point_to_voxel), torch.from_numpy(np.ascontiguousarray(features, np.float32)))
    return (sums / torch.from_numpy(counts).to(torch.float32)[:, None]).numpy()


def _check_per_point(name: str, values, n: int, width: int | None) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.ndim != 2 or len(values) != n or (width is not None and values.shape[1] != width):
        want = f"({n}, {width})" if width is not None else f"({n}, D)"
        raise ValueError(f"{name} must be {want} to match the points, got shape {values.shape}")
    return values
