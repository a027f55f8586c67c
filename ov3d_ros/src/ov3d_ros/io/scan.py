"""The one in-memory scan type shared by the node, training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Label packing shared with MIT-SPARK semantic_inference / Hydra: one uint32 per point.
SEMANTIC_SHIFT = 16
INSTANCE_MASK = 0xFFFF


def pack_label(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """semantic << 16 | instance, both clipped to 16 bits."""
    sem = np.asarray(semantic).astype(np.uint32) & INSTANCE_MASK
    inst = np.asarray(instance).astype(np.uint32) & INSTANCE_MASK
    return (sem << SEMANTIC_SHIFT) | inst


def unpack_label(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of pack_label: (semantic, instance) as int32 arrays."""
    lab = np.asarray(label).astype(np.uint32)
    return (lab >> SEMANTIC_SHIFT).astype(np.int32), (lab & INSTANCE_MASK).astype(np.int32)


@dataclass
class Scan:
    """A point cloud with everything known about it.

    points:    (N, 3) float32 metres, in ``frame_id``.
    colors:    (N, 3) uint8 RGB, or None.
    normals:   (N, 3) float32 unit vectors, or None.
    labels:    (N,) int32 semantic class id (dataset-specific; 0 = unlabelled), or None.
    instances: (N,) int32 instance / entity id (0 = none), or None.
    features:  (N, D) float32 per-point semantic features lifted upstream, or None.
    frame_id, stamp_ns: where and when (ROS header).
    meta:      free-form provenance (source file, class names, annotations path, ...).
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    instances: np.ndarray | None = None
    features: np.ndarray | None = None
    frame_id: str = "map"
    stamp_ns: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float32).reshape(-1, 3)
        n = len(self.points)
        for name, dtype, width in (
            ("colors", np.uint8, 3),
            ("normals", np.float32, 3),
            ("labels", np.int32, None),
            ("instances", np.int32, None),
            ("features", np.float32, -1),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value)
            if name == "colors" and arr.dtype != np.uint8:
                # floats in [0, 1] are accepted and converted, as Open3D stores them
                arr = np.clip(np.rint(arr * 255.0), 0, 255) if arr.dtype.kind == "f" else arr
            arr = np.ascontiguousarray(arr, dtype=dtype)
            if width is None:
                arr = arr.reshape(-1)
            elif width == -1:
                arr = arr.reshape(n, -1) if arr.size else arr.reshape(n, 0)
            else:
                arr = arr.reshape(-1, width)
            if len(arr) != n:
                raise ValueError(f"Scan.{name} has {len(arr)} rows but there are {n} points")
            setattr(self, name, arr)

    def __len__(self) -> int:
        return len(self.points)

    def subset(self, index: np.ndarray) -> Scan:
        """The scan restricted to ``index`` (a boolean mask or integer indices)."""
        pick = lambda a: None if a is None else a[index]
        return replace(
            self,
            points=self.points[index],
            colors=pick(self.colors),
            normals=pick(self.normals),
            labels=pick(self.labels),
            instances=pick(self.instances),
            features=pick(self.features),
            meta=dict(self.meta),
        )
