"""Training scans for distillation: one real point per voxel, colours, normals if needed; cached.

Distillation needs no entities and no texts (the teacher supplies every target), so preparation
is lighter than MPEC's (``data.scene``): no over-segmentation, no text encoder. Per source, once:

1. load the scan (``data.sources``: the last map cloud of a recording, or a scan file);
2. keep one real point per voxel of the training voxel size (the first in input order), so the
   views see ~1 point per voxel and the scan's memory is bounded by its surface area;
3. colours (mid-grey when the scan has none; the feature code then sees a neutral colour) and,
   only for input feature sets that use them, normals (the scan's own, else estimated).

Files are ``<cache>/distill_<key>.npz`` with a key over the source's fingerprint and the settings,
written atomically (temporary name + rename), so concurrent runs share a cache safely.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ov3d_ros.core.voxel import voxelize

from ..data.overseg import estimate_normals
from ..data.sources import Source, load_source, source_fingerprint

CACHE_VERSION = 1


class ScanTooSmallError(ValueError):
    """A training scan with too few voxels to sample contrastive pairs from."""


@dataclass
class DistillScene:
    points: np.ndarray  # (N, 3) float32, one per voxel
    colors: np.ndarray  # (N, 3) uint8
    normals: np.ndarray | None  # (N, 3) float32 unit, only when the input features use normals
    source: str

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
        os.close(handle)
        arrays = {"points": self.points, "colors": self.colors, "source": np.array(self.source)}
        if self.normals is not None:
            arrays["normals"] = self.normals
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> DistillScene:
        with np.load(path, allow_pickle=False) as data:
            normals = data["normals"] if "normals" in data.files else None
            return cls(data["points"], data["colors"], normals, str(data["source"]))


def prepare_scene(
    source: Source, voxel_size: float, with_normals: bool, normals_k: int, min_voxels: int
) -> DistillScene:
    """Steps 1-3 of the module doc for one source; :class:`ScanTooSmallError` below ``min_voxels``."""
    scan = load_source(source).scan
    voxels = voxelize(scan.points, voxel_size)
    if voxels.num_voxels < min_voxels:
        raise ScanTooSmallError(
            f"{source.path}: {voxels.num_voxels} voxels of {voxel_size} m, fewer than data.min_voxels={min_voxels}; "
            "remove it from --data"
        )
    _, first = np.unique(voxels.point_to_voxel, return_index=True)
    keep = np.sort(first)
    points = scan.points[keep].astype(np.float32)
    colors = scan.colors[keep] if scan.colors is not None else np.full((len(keep), 3), 128, np.uint8)
    normals = None
    if with_normals:
        normals = scan.normals[keep] if scan.normals is not None else estimate_normals(points, normals_k)
        normals = np.asarray(normals, np.float32)
    return DistillScene(points, np.asarray(colors, np.uint8), normals, str(source.path))


def scene_cache_key(source: Source, voxel_size: float, with_normals: bool, normals_k: int) -> str:
    payload = {
        "version": CACHE_VERSION,
        "source": source_fingerprint(source),
        "voxel_size": voxel_size,
        "normals": [with_normals, normals_k if with_normals else None],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def prepare_scenes(
    sources: list[Source],
    cache_dir: Path,
    voxel_size: float,
    *,
    with_normals: bool,
    normals_k: int = 16,
    min_voxels: int = 64,
    progress: bool = False,
) -> list[Path]:
    """Prepared scene files for ``sources``, preparing those not yet in ``cache_dir``."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    iterator = sources
    if progress:
        from tqdm import tqdm

        iterator = tqdm(sources, desc="preparing scans", dynamic_ncols=True)
    out = []
    for source in iterator:
        path = cache_dir / f"distill_{scene_cache_key(source, voxel_size, with_normals, normals_k)}.npz"
        if not path.is_file():
            prepare_scene(source, voxel_size, with_normals, normals_k, min_voxels).save(path)
        out.append(path)
    return out
