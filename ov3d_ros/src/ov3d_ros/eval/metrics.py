"""Semantic segmentation metrics from a confusion matrix: mIoU and mAcc over the classes present.

Conventions (OpenScene / GeoPurify):

* ground truth ``IGNORE`` (-1) points are left out entirely;
* a prediction of ``NONE`` (-1: the point matched no query) on a labelled point is a miss: it
  counts against that point's class (a false negative), against no class as a false positive;
* a class is *present* when the ground truth has at least one point of it; means are over the
  present classes only (a class absent from the scene has no defined IoU here);
* IoU_c = TP / (TP + FP + FN), Acc_c = TP / (TP + FN) (per-class recall).

Foreground variants (f-mIoU, f-mAcc) are computed by the caller with the excluded classes
removed from the candidate list *and* their ground-truth points set to IGNORE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -1
NONE = -1


@dataclass
class SegmentationMetrics:
    miou: float  # fraction in [0, 1]
    macc: float
    per_class_iou: dict[str, float | None]  # None for classes absent from the ground truth
    per_class_acc: dict[str, float | None]
    confusion: np.ndarray  # (C, C + 1): rows ground truth, columns prediction, last column = none
    points: int  # labelled points evaluated


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C + 1) int64 counts; rows = ground-truth class, columns = predicted class, column C =
    predicted nothing. Ground truth IGNORE points are skipped."""
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth ({len(gt)}) and prediction ({len(pred)}) must have the same length")
    if gt.size and (gt.max() >= num_classes or gt.min() < IGNORE):
        raise ValueError(f"ground-truth ids must be in -1..{num_classes - 1}")
    if pred.size and (pred.max() >= num_classes or pred.min() < NONE):
        raise ValueError(f"predicted ids must be in -1..{num_classes - 1}")
    keep = gt != IGNORE
    columns = np.where(pred[keep] == NONE, num_classes, pred[keep])
    flat = gt[keep] * (num_classes + 1) + columns
    return np.bincount(flat, minlength=num_classes * (num_classes + 1)).reshape(num_classes, num_classes + 1)


def metrics_from_confusion(confusion: np.ndarray, class_names: list[str] | tuple[str, ...]) -> SegmentationMetrics:
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes + 1):
        raise ValueError(f"confusion must be ({num_classes}, {num_classes + 1}), got {confusion.shape}")
    tp = np.diag(confusion[:, :num_classes]).astype(np.float64)
    gt_count = confusion.sum(axis=1).astype(np.float64)  # TP + FN (misses included)
    pred_count = confusion[:, :num_classes].sum(axis=0).astype(np.float64)  # TP + FP
    present = gt_count > 0
    iou = np.divide(tp, gt_count + pred_count - tp, out=np.zeros(num_classes), where=present)
    acc = np.divide(tp, gt_count, out=np.zeros(num_classes), where=present)
    return SegmentationMetrics(
        miou=float(iou[present].mean()) if present.any() else float("nan"),
        macc=float(acc[present].mean()) if present.any() else float("nan"),
        per_class_iou={n: (float(v) if p else None) for n, v, p in zip(class_names, iou, present)},
        per_class_acc={n: (float(v) if p else None) for n, v, p in zip(class_names, acc, present)},
        confusion=confusion,
        points=int(confusion.sum()),
    )


def evaluate(gt: np.ndarray, pred: np.ndarray, class_names: list[str] | tuple[str, ...]) -> SegmentationMetrics:
    """Per-point ground truth and prediction (class indices, -1 = ignore / none) -> metrics."""
    return metrics_from_confusion(confusion_matrix(gt, pred, len(class_names)), class_names)


def restrict_classes(
    gt: np.ndarray, class_names: tuple[str, ...], excluded: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Ground truth re-indexed to the classes that remain after dropping ``excluded``; points of
    excluded classes become IGNORE. Returns (new ground truth, remaining names)."""
    missing = [name for name in excluded if name not in class_names]
    if missing:
        raise ValueError(f"classes to exclude not in the class list: {missing}")
    remaining = tuple(name for name in class_names if name not in excluded)
    remap = np.full(len(class_names), IGNORE, dtype=np.int64)
    for new_index, name in enumerate(remaining):
        remap[class_names.index(name)] = new_index
    gt = np.asarray(gt).astype(np.int64)
    out = np.full(gt.shape, IGNORE, dtype=np.int64)
    valid = gt != IGNORE
    out[valid] = remap[gt[valid]]
    return out, remaining
