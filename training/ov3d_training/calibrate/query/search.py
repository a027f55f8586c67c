"""Calibrate the one-query rule (``ov3d_ros.core.query.QueryRule``) on held-out labelled scans.

What is chosen: ``exclude`` (vocabulary names at text cosine >= it to the query are left out),
``alias`` (names at cosine in [alias, exclude) count as the query; None = never) and ``margin``
(subtracted from the vocabulary's logits). They depend on the model (how far apart its semantic
field puts neighbouring names) and on the text encoder, so they are picked per model, like GGP.

Protocol: every ScanNet-20 class present in the scans is asked *alone*, exactly as the node asks it
by default (its default negatives and background, the vocabulary on: ``ov3d_ros.eval.single``),
on every scan; per setting the intersections and unions are summed over all scans (dataset level)
and the setting with the best mean single-query IoU over the classes wins. Ties: the smaller
|margin|, then no aliases, then the higher exclude (fewer names left out). The scans must not be
the model's training data nor the evaluation scan (the CLI refuses both). For reference the same
scans are scored with the vocabulary off and closed-set (all class names competing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ov3d_ros.core.query import QueryRule
from ov3d_ros.core.segmenter import Segmenter
from ov3d_ros.eval.closed import predict
from ov3d_ros.eval.metrics import confusion_matrix, metrics_from_confusion
from ov3d_ros.eval.scannet20 import CLASS_NAMES, nyu40_to_class_index
from ov3d_ros.eval.single import node_default_query
from ov3d_ros.io.scan import Scan

DEFAULT_EXCLUDE = (0.8, 0.9, 1.01)  # 1.01: nothing left out but exact duplicates
DEFAULT_ALIAS = (None, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8)
DEFAULT_MARGIN = (-0.02, 0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.16)
QUERY_CALIBRATION_FILE = "query_calibration.json"


@dataclass
class QueryCalibration:
    scans: list[str]
    classes: list[str]  # the classes asked (present in the scans)
    points: int  # labelled points per query
    table: list[dict]  # {"exclude", "alias", "margin", "miou"} for every setting tried
    best: dict  # the chosen setting, its miou and per-class IoU
    vocabulary_off: dict  # {"miou", "per_class_iou"}: the node's decision without the vocabulary
    closed_miou: float  # closed-set mIoU over the same classes (all names competing), for reference
    vocabulary: dict = field(default_factory=dict)  # {"file", "names", "sha256"}

    def rule(self) -> QueryRule:
        return QueryRule(exclude=self.best["exclude"], alias=self.best["alias"], margin=self.best["margin"])

    def to_dict(self) -> dict:
        return {
            "scans": self.scans,
            "classes": self.classes,
            "points": self.points,
            "best": self.best,
            "vocabulary_off": self.vocabulary_off,
            "closed_miou": self.closed_miou,
            "vocabulary": self.vocabulary,
            "table": self.table,
        }


def model_record(calibration: QueryCalibration) -> dict:
    """What ``model.json`` keeps under ``query``: the rule and how it was chosen."""
    return {
        **calibration.rule().record(),
        "calibration": {
            "method": "best dataset-level mean single-query IoU (each class asked alone, node defaults) over "
            "exclude x alias x margin on held-out labelled scans (ov3d-train calibrate-query)",
            "scans": calibration.scans,
            "classes": calibration.classes,
            "points": calibration.points,
            "miou": calibration.best["miou"],
            "vocabulary_off_miou": calibration.vocabulary_off["miou"],
            "closed_miou": calibration.closed_miou,
            "vocabulary": calibration.vocabulary,
        },
    }


def rule_grid(excludes, aliases) -> list[tuple[float, float | None]]:
    """(exclude, alias) pairs that mean something: an alias threshold below the exclusion one."""
    return [(float(e), None if a is None else float(a)) for e in excludes for a in aliases if a is None or a < e]


def calibrate_query_rule(
    segmenter: Segmenter,
    scans: list[tuple[str, Scan]],
    excludes=DEFAULT_EXCLUDE,
    aliases=DEFAULT_ALIAS,
    margins=DEFAULT_MARGIN,
    progress: bool = False,
) -> QueryCalibration:
    """Score every exclude x alias x margin setting on ``scans`` (name, Scan with NYU40 labels); module doc."""
    if not scans:
        raise ValueError("query calibration needs at least one labelled scan")
    truths = []
    for name, scan in scans:
        if scan.labels is None:
            raise ValueError(f"{name}: a calibration scan needs per-point NYU40 labels")
        truths.append(nyu40_to_class_index(scan.labels))
    present = [c for i, c in enumerate(CLASS_NAMES) if any((gt == i).any() for gt in truths)]
    if not present:
        raise ValueError("the calibration scans hold no ScanNet-20 labels")
    grid = rule_grid(excludes, aliases)
    margins = tuple(float(m) for m in margins)
    inter = np.zeros((len(grid), len(margins), len(present)), np.int64)
    union = np.zeros_like(inter)
    off = np.zeros((2, len(present)), np.int64)  # intersection, union with the vocabulary off
    closed = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES) + 1), np.int64)
    with _progress(len(scans), progress) as bar:
        for gt, (_, scan) in zip(truths, scans):
            processed = segmenter.process(scan)
            labeled = gt >= 0
            point_to_voxel = processed.voxels.point_to_voxel
            closed += confusion_matrix(gt, predict(segmenter, processed, CLASS_NAMES, True), len(CLASS_NAMES))

            def counts(semantic, truth) -> tuple[int, int]:
                answered = (semantic.cpu().numpy() == 1)[point_to_voxel]
                return int((answered & truth).sum()), int(((answered | truth) & labeled).sum())

            for c, cls in enumerate(present):
                truth = gt == CLASS_NAMES.index(cls)
                decision, _ = segmenter.voxel_decision(processed, node_default_query(cls, vocabulary=False))
                i, u = counts(decision.semantic, truth)
                off[:, c] += (i, u)
                query = node_default_query(cls, vocabulary=True)
                for g, (exclude, alias) in enumerate(grid):
                    # margin 0 here: the margins are tried on the same parts below
                    parts = segmenter.decision_parts(processed, query, rule=QueryRule(exclude, alias, 0.0))
                    for m, margin in enumerate(margins):
                        i, u = counts(parts.decide(query.threshold, extra_margin=margin).semantic, truth)
                        inter[g, m, c] += i
                        union[g, m, c] += u
            bar.update(1)
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)  # (G, M, C)
    mean = iou.mean(axis=2)
    table = [
        {"exclude": e, "alias": a, "margin": m, "miou": round(100.0 * float(mean[g, k]), 2)}
        for g, (e, a) in enumerate(grid)
        for k, m in enumerate(margins)
    ]
    order = [
        (round(100.0 * float(mean[g, k]), 2), -abs(m), a is None, e, g, k)
        for g, (e, a) in enumerate(grid)
        for k, m in enumerate(margins)
    ]
    *_, g, k = max(order)
    exclude, alias = grid[g]
    best = {
        "exclude": exclude,
        "alias": alias,
        "margin": margins[k],
        "miou": round(100.0 * float(mean[g, k]), 2),
        "per_class_iou": {c: round(100.0 * float(v), 2) for c, v in zip(present, iou[g, k])},
    }
    off_iou = np.divide(off[0], off[1], out=np.zeros(len(present)), where=off[1] > 0)
    closed_iou = metrics_from_confusion(closed, CLASS_NAMES).per_class_iou
    vocabulary = segmenter.vocabulary
    return QueryCalibration(
        scans=[name for name, _ in scans],
        classes=present,
        points=int(sum(int((gt >= 0).sum()) for gt in truths)),
        table=table,
        best=best,
        vocabulary_off={
            "miou": round(100.0 * float(off_iou.mean()), 2),
            "per_class_iou": {c: round(100.0 * float(v), 2) for c, v in zip(present, off_iou)},
        },
        closed_miou=round(100.0 * float(np.mean([closed_iou[c] for c in present])), 2),
        vocabulary={"file": Path(vocabulary.source).name, "names": len(vocabulary), "sha256": vocabulary.sha256},
    )


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="calibrating the query rule", unit="scan", disable=not enabled)
