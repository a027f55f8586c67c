"""Detected objects -> an RViz MarkerArray: a box and a "name score" label per object.

The array always starts with a DELETEALL, so objects that disappeared since the last result
vanish from RViz. Each query has its own namespace (its text), so RViz's marker display can
switch queries on and off; ids are unique within a namespace (box 2k, label 2k + 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from geometry_msgs.msg import Pose
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ov3d_ros.core.types import DetectedObject
from ov3d_ros.node.palette import query_colors

BOX_ALPHA = 0.35
LABEL_HEIGHT_M = 0.12
MIN_BOX_EDGE_M = 0.01  # RViz refuses zero scale; a one-voxel object still gets a visible box


def _set_color(color: ColorRGBA, rgb: tuple[float, float, float], alpha: float) -> None:
    color.r, color.g, color.b, color.a = rgb[0], rgb[1], rgb[2], alpha


def _set_pose(pose: Pose, center: list[float], quaternion: list[float]) -> None:
    pose.position.x, pose.position.y, pose.position.z = center
    o = pose.orientation
    o.x, o.y, o.z, o.w = quaternion


def label_text(obj: DetectedObject) -> str:
    return f"{obj.query} {obj.score:.2f}"


def objects_to_markers(
    objects: Sequence[DetectedObject],
    header: object,
    num_queries: int,
    *,
    box_alpha: float = BOX_ALPHA,
    label_height: float = LABEL_HEIGHT_M,
) -> MarkerArray:
    """MarkerArray for ``objects`` in ``header``'s frame: DELETEALL, then box + label per object.

    ``num_queries`` fixes the colour table (same colours as the labelled cloud).
    """
    # Vectorised geometry first; the per-object loop only fills message fields in place (rclpy
    # message constructors are slow: ~150 us per marker through keyword arguments).
    colors = query_colors(num_queries).astype(np.float64) / 255.0
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    if not objects:
        return MarkerArray(markers=markers)
    semantic = np.array([obj.semantic_id for obj in objects])
    bad = (semantic < 1) | (semantic > num_queries)
    if bad.any():
        obj = objects[int(np.argmax(bad))]
        raise ValueError(f"object {obj.query!r} has semantic_id {obj.semantic_id}, outside 1..{num_queries}")
    centers = np.array([obj.center for obj in objects], dtype=np.float64).reshape(-1, 3)
    sizes = np.maximum(np.array([obj.size for obj in objects], dtype=np.float64).reshape(-1, 3), MIN_BOX_EDGE_M)
    quats = np.array([obj.orientation for obj in objects], dtype=np.float64).reshape(-1, 4)
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norms > 0, quats / np.where(norms > 0, norms, 1.0), [0.0, 0.0, 0.0, 1.0])
    tops = centers + np.c_[np.zeros((len(objects), 2)), sizes[:, 2] / 2.0 + 0.6 * label_height]
    identity = [0.0, 0.0, 0.0, 1.0]
    next_id: dict[str, int] = {}
    for obj, center, size, quat, top in zip(objects, centers.tolist(), sizes.tolist(), quats.tolist(), tops.tolist()):
        ns = obj.query
        k = next_id.get(ns, 0)
        next_id[ns] = k + 1
        rgb = colors[obj.semantic_id].tolist()
        box = Marker(header=header, ns=ns, id=2 * k, type=Marker.CUBE)
        _set_pose(box.pose, center, quat)
        box.scale.x, box.scale.y, box.scale.z = size
        _set_color(box.color, rgb, float(box_alpha))
        label = Marker(header=header, ns=ns, id=2 * k + 1, type=Marker.TEXT_VIEW_FACING, text=label_text(obj))
        _set_pose(label.pose, top, identity)
        label.scale.z = float(label_height)
        _set_color(label.color, rgb, 1.0)
        markers += [box, label]
    return MarkerArray(markers=markers)
