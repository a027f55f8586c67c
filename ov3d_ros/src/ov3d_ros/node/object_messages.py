"""Detected objects as messages: ov3d_msgs/ObjectArray when built, JSON text otherwise.

Both carry the same facts per object (query, semantic and instance id, box pose and size,
centroid, score, point count), so a consumer can switch from the JSON fallback to the typed
message without losing anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ov3d_ros.core.types import DetectedObject, QueryError, QuerySet

JSON_SCHEMA = "ov3d_ros/objects/v1"


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def objects_to_msg(objects: Sequence[DetectedObject], header: Any, queries: Sequence[str], msgs: Any) -> Any:
    """An ``ov3d_msgs/ObjectArray``; ``msgs`` is the ``ov3d_msgs.msg`` module."""
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3

    out = msgs.ObjectArray(header=header, queries=list(queries))
    for obj in objects:
        cx, cy, cz = _floats(obj.center)
        qx, qy, qz, qw = _floats(obj.orientation)
        sx, sy, sz = _floats(obj.size)
        mx, my, mz = _floats(obj.centroid)
        out.objects.append(
            msgs.Object(
                query=obj.query,
                semantic_id=int(obj.semantic_id),
                instance_id=int(obj.instance_id),
                box_pose=Pose(position=Point(x=cx, y=cy, z=cz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)),
                box_size=Vector3(x=sx, y=sy, z=sz),
                centroid=Point(x=mx, y=my, z=mz),
                score=float(obj.score),
                num_points=int(obj.num_points),
            )
        )
    return out


def objects_to_json(objects: Sequence[DetectedObject], frame_id: str, stamp_ns: int, queries: Sequence[str]) -> str:
    """The std_msgs/String fallback: one JSON document with the ObjectArray's content."""

    def rows(name: str, width: int) -> list[list[float]]:
        return np.array([getattr(o, name) for o in objects], dtype=np.float64).reshape(-1, width).tolist()

    centers, sizes, centroids, quats = rows("center", 3), rows("size", 3), rows("centroid", 3), rows("orientation", 4)
    doc = {
        "schema": JSON_SCHEMA,
        "frame_id": frame_id,
        "stamp_ns": int(stamp_ns),
        "queries": list(queries),
        "objects": [
            {
                "query": obj.query,
                "semantic_id": int(obj.semantic_id),
                "instance_id": int(obj.instance_id),
                "center": centers[i],
                "orientation_xyzw": quats[i],
                "size": sizes[i],
                "centroid": centroids[i],
                "score": float(obj.score),
                "num_points": int(obj.num_points),
            }
            for i, obj in enumerate(objects)
        ],
    }
    return json.dumps(doc, separators=(",", ":"))


def query_from_msg(msg: Any, *, default_threshold: float | None) -> QuerySet:
    """``ov3d_msgs/Query`` -> QuerySet. A NaN threshold means "use the node's parameter".

    Raises QueryError (the caller logs it and keeps the previous query).
    """
    threshold = float(msg.threshold)
    if math.isnan(threshold):
        threshold_value = default_threshold
    elif not math.isfinite(threshold) or threshold < 0.0:
        raise QueryError(f"threshold must be a finite number >= 0 or NaN, got {threshold}")
    else:
        threshold_value = threshold if threshold > 0.0 else None
    clean = lambda names: tuple(" ".join(str(n).split()) for n in names)
    return QuerySet(
        positives=clean(msg.positives),
        negatives=clean(msg.negatives),
        threshold=threshold_value,
        background=bool(msg.use_background),
    )
