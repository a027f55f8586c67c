"""Single-query evaluation: each class asked alone, as a robot asks ("find the chair").

Each name is asked on its own with the node's default decision -- the node's default negatives,
background and vocabulary switch, read from the node's parameter table
(``ov3d_ros.node.parameters``, which ``config/segment.yaml`` is tested against) and the model's
calibrated one-query rule -- and its points are those labelled with it. The single-query IoU
of class c asked as q is

    IoU = |{labelled points answered q} ∩ {gt == c}| / |({answered q} ∪ {gt == c}) ∩ labelled|

over the points with a ScanNet-20 label. Over several scans the intersections and unions are
summed before dividing (dataset level, like the closed-set confusion). Every class present in
the dataset is asked on every scan (answers on scans without it are false positives); a class
asked by several names (a synonyms table) scores the mean of its names' IoUs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ov3d_ros.core.query import QueryRule
from ov3d_ros.core.segmenter import ProcessedCloud, Segmenter
from ov3d_ros.core.types import QuerySet
from ov3d_ros.eval.closed import pct


def node_default_query(name: str, vocabulary: bool | None = None) -> QuerySet:
    """``name`` asked alone with the node's default parameters (negatives, background, vocabulary,
    threshold); ``vocabulary`` True / False overrides the node's switch."""
    from ov3d_ros.node.parameters import NodeSettings  # pure Python: no rclpy import

    queries = NodeSettings.from_values({"queries": name}).query_set()
    return queries if vocabulary is None else replace(queries, vocabulary=bool(vocabulary))


@dataclass
class SingleCounts:
    """Per asked name: its class and the summed intersection and union (points)."""

    names: tuple[str, ...]
    classes: tuple[str, ...]  # the class each name asks for
    intersection: np.ndarray  # (len(names),) int64
    union: np.ndarray

    def __add__(self, other: SingleCounts) -> SingleCounts:
        if (self.names, self.classes) != (other.names, other.classes):
            raise ValueError("single-query counts of different names cannot be summed")
        return SingleCounts(self.names, self.classes, self.intersection + other.intersection, self.union + other.union)


def single_scene(
    segmenter: Segmenter,
    processed: ProcessedCloud,
    gt: np.ndarray,
    class_names: tuple[str, ...],
    asked: tuple[str, ...],
    names_for: dict[str, tuple[str, ...]],
    vocabulary: bool | None = None,
    rule: QueryRule | None = None,
) -> SingleCounts:
    """Ask every name of every class in ``asked`` alone on one scan (gt: (N,) class index, -1 = unlabelled),
    under ``rule`` (None: the segmenter's, i.e. the model's calibrated one)."""
    labeled = gt >= 0
    names, classes, inter, union = [], [], [], []
    point_to_voxel = processed.voxels.point_to_voxel
    for cls in asked:
        truth = gt == class_names.index(cls)
        for name in names_for[cls]:
            decision, _ = segmenter.voxel_decision(processed, node_default_query(name, vocabulary), rule=rule)
            answered = (decision.semantic.cpu().numpy() == 1)[point_to_voxel]
            names.append(name)
            classes.append(cls)
            inter.append(int((answered & truth).sum()))
            union.append(int(((answered | truth) & labeled).sum()))
    return SingleCounts(tuple(names), tuple(classes), np.array(inter, np.int64), np.array(union, np.int64))


def single_metrics(
    counts: SingleCounts,
    present: tuple[str, ...],
    foreground_excluded: tuple[str, ...],
    closed_per_class_iou: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """Mean single-query IoU over the ``present`` classes (``miou``), over the foreground ones
    (``fmiou``), per class and per name, and -- given the closed-set per-class IoU (percent) -- the
    closed-set mean over the same classes, to compare."""
    name_iou = np.divide(counts.intersection, counts.union, out=np.zeros(len(counts.names)), where=counts.union > 0)
    per_class: dict[str, float] = {}
    for cls in present:
        ious = name_iou[[i for i, c in enumerate(counts.classes) if c == cls]]
        per_class[cls] = float(ious.mean())
    foreground = [c for c in present if c not in foreground_excluded]
    out: dict[str, Any] = {
        "miou": pct(np.mean([per_class[c] for c in present])) if present else None,
        "fmiou": pct(np.mean([per_class[c] for c in foreground])) if foreground else None,
        "per_class_iou": {c: pct(v) for c, v in per_class.items()},
        "per_name_iou": {n: pct(v) for n, v in zip(counts.names, name_iou)},
    }
    if closed_per_class_iou is not None:
        same = [closed_per_class_iou[c] for c in present if closed_per_class_iou.get(c) is not None]
        out["closed_miou_same_classes"] = round(float(np.mean(same)), 2) if same else None
    return out
