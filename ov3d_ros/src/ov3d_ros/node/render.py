"""A PNG of a labelled cloud: top view and side view, coloured per query, boxes and names.

For the demo's summary and for bug reports; RViz is the live view. Matplotlib with the Agg
backend, so it works headless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ov3d_ros.core.types import DetectedObject
from ov3d_ros.node.palette import query_colors

MAX_DRAWN_POINTS = 200_000  # enough for a dense picture; more only slows the scatter
MAX_LABELS_PER_QUERY = 5  # boxes are all drawn; names only for the best few, to stay readable


def render_labeled_cloud(
    points: np.ndarray,
    colors: np.ndarray,
    objects: Sequence[DetectedObject],
    queries: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Write ``path`` (PNG): x-y (top) and x-z (side) views; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(points) > MAX_DRAWN_POINTS:
        keep = np.random.default_rng(0).choice(len(points), MAX_DRAWN_POINTS, replace=False)
        points, colors = points[keep], colors[keep]
    table = query_colors(len(queries)).astype(np.float64) / 255.0
    fig, (top, side) = plt.subplots(1, 2, figsize=(16, 8), gridspec_kw={"width_ratios": [1.4, 1.0]})
    order = np.argsort(points[:, 2])  # draw low points first so tabletops stay visible from above
    top.scatter(points[order, 0], points[order, 1], c=colors[order] / 255.0, s=1.0, linewidths=0)
    side.scatter(points[:, 0], points[:, 2], c=colors / 255.0, s=1.0, linewidths=0)
    labeled = set()
    for index in range(1, len(queries) + 1):
        best = sorted((o for o in objects if o.semantic_id == index), key=lambda o: -o.score)[:MAX_LABELS_PER_QUERY]
        labeled.update(id(o) for o in best)
    for obj in objects:
        color = table[obj.semantic_id]
        corners = _footprint(
            np.asarray(obj.center, float), np.asarray(obj.size, float), np.asarray(obj.orientation, float)
        )
        top.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=color, linewidth=1.5))
        if id(obj) in labeled:
            top.annotate(
                f"{obj.query} {obj.score:.2f}",
                corners[2],
                fontsize=7,
                color=color,
                bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0, "pad": 1},
            )
        cx, _, cz = obj.center
        sx, _, sz = obj.size
        side.add_patch(plt.Rectangle((cx - sx / 2, cz - sz / 2), sx, sz, fill=False, edgecolor=color, linewidth=1.0))
    for ax, (xl, yl) in ((top, ("x [m]", "y [m]")), (side, ("x [m]", "z [m]"))):
        ax.set_aspect("equal")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_facecolor("#202020")
    top.set_title("top view")
    side.set_title("side view")
    handles = [Line2D([], [], marker="s", linestyle="", color=table[i + 1], label=q) for i, q in enumerate(queries)]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), frameon=False)
    if title:
        fig.suptitle(title, y=0.02, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _footprint(center: np.ndarray, size: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """The box's four corners in the x-y plane (yaw from the quaternion, z up)."""
    x, y, z, w = quaternion / (np.linalg.norm(quaternion) or 1.0)
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    half = size[:2] / 2.0
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return local @ rot.T + center[:2]
