"""Closed-set evaluation of one scan: every class name competes (the ScanNet benchmark protocol).

Four predictions per scan -- all classes / foreground classes x GGP on / off -- each kept as a
confusion matrix, so that a dataset's metrics come from the matrices summed over its scans
(:func:`closed_metrics` of the sums), the way ScanNet's benchmark scores a dataset. The queries
are the class names (or the names a synonyms table gives, :mod:`.synonyms`; a point won by any
of a class's names is that class), with no background candidates and no vocabulary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ov3d_ros.core.segmenter import ProcessedCloud, Segmenter
from ov3d_ros.core.types import QuerySet
from ov3d_ros.eval.metrics import confusion_matrix, metrics_from_confusion, restrict_classes

VARIANTS = ("full", "full_raw", "fg", "fg_raw")  # (class set, pooling): all/foreground x GGP on/off


def predict(
    segmenter: Segmenter,
    processed: ProcessedCloud,
    class_names: tuple[str, ...],
    pooling: bool,
    names_for: dict[str, tuple[str, ...]] | None = None,
) -> np.ndarray:
    """(N,) predicted class index per point (-1 = none), the classes' names as closed-set queries
    (``names_for``: the names each class is asked by; default its own name)."""
    names_for = names_for or {name: (name,) for name in class_names}
    positives = tuple(name for cls in class_names for name in names_for[cls])
    class_of = np.array([index for index, cls in enumerate(class_names) for _ in names_for[cls]] + [-1], np.int64)
    queries = QuerySet(positives=positives, background=False, vocabulary=False)
    decision, _ = segmenter.voxel_decision(processed, queries, pooling=pooling)
    voxel_class = class_of[decision.semantic.cpu().numpy().astype(np.int64) - 1]  # 0 (none) -> -1
    return voxel_class[processed.voxels.point_to_voxel]


def closed_scene(
    segmenter: Segmenter,
    processed: ProcessedCloud,
    gt: np.ndarray,
    class_names: tuple[str, ...],
    excluded: tuple[str, ...],
    names_for: dict[str, tuple[str, ...]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The four confusion matrices of one scan (:data:`VARIANTS`) and the pooled all-class prediction."""
    fg_gt, fg_names = restrict_classes(gt, class_names, excluded)
    pred = predict(segmenter, processed, class_names, True, names_for)
    predictions = {
        "full": (gt, pred, class_names),
        "full_raw": (gt, predict(segmenter, processed, class_names, False, names_for), class_names),
        "fg": (fg_gt, predict(segmenter, processed, fg_names, True, names_for), fg_names),
        "fg_raw": (fg_gt, predict(segmenter, processed, fg_names, False, names_for), fg_names),
    }
    confusions = {key: confusion_matrix(truth, guess, len(names)) for key, (truth, guess, names) in predictions.items()}
    return confusions, pred


def pct(value) -> float | None:
    """A fraction as a percentage rounded to 0.01 (None for absent / undefined)."""
    return None if value is None or not np.isfinite(value) else round(100.0 * float(value), 2)


def closed_metrics(
    confusions: dict[str, np.ndarray], class_names: tuple[str, ...], fg_names: tuple[str, ...]
) -> dict[str, Any]:
    """miou / macc / fmiou / fmacc (GGP on), the same with ``_raw`` (GGP off), per-class IoU, the
    classes present and the labelled points, from (possibly summed) confusion matrices."""
    full = metrics_from_confusion(confusions["full"], class_names)
    full_raw = metrics_from_confusion(confusions["full_raw"], class_names)
    fg = metrics_from_confusion(confusions["fg"], fg_names)
    fg_raw = metrics_from_confusion(confusions["fg_raw"], fg_names)
    return {
        "miou": pct(full.miou),
        "macc": pct(full.macc),
        "fmiou": pct(fg.miou),
        "fmacc": pct(fg.macc),
        "miou_raw": pct(full_raw.miou),
        "macc_raw": pct(full_raw.macc),
        "fmiou_raw": pct(fg_raw.miou),
        "fmacc_raw": pct(fg_raw.macc),
        "per_class_iou": {name: pct(v) for name, v in full.per_class_iou.items()},
        "classes_present": [name for name, v in full.per_class_iou.items() if v is not None],
        "labeled_points": full.points,
    }
