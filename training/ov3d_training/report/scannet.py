"""Zero-shot accuracy of teacher and student on a labelled ScanNet scan, with every pooling variant.

Protocol (``ov3d_ros.eval``, OpenScene / GeoPurify): the ScanNet-20 class names are the queries,
each point takes the class whose text embedding is closest (cosine) to its voxel's feature;
mIoU / mAcc over the classes present; f-mIoU / f-mAcc drop wall, floor and other furniture from
both candidates and ground truth.

GGP is linear and acts on each channel alone, so pooling the (V, 20) logits once gives the
pooled logits of every candidate subset: the foreground metrics take their columns of the same
pooled array. T sweeps pool incrementally (W^T2 = W^(T2 - T1) W^T1).

Variants (the student's semantic head in all but the first):

* ``teacher``: the MPEC teacher's VL-adapter output, no pooling;
* ``student``: no pooling (the raw semantic head; ``student_centered``: the same at the rooms'
  best centering without pooling, ``ov3d_ros.core.query``'s "Centering");
* ``ggp_uniform`` / ``ggp_distance``: GGP on plain geometric weights (1/k; softmax of -d^2/sigma^2);
* ``ggp_geometric``: GGP on the hand-made data-only embedding (normals, colour, height;
  ``ov3d_ros.core.geometry.geometric_embedding``) with the affinity softmax -- plain geometry
  with the paper's weighting;
* ``ggp_learned``: GGP on the student's learned affinity embeddings (what the node runs).

Each GGP variant is scored at its own tau / T, calibrated for this model on held-out simulated
rooms (``ov3d-train calibrate``, recorded in model.json) -- never chosen on the scan scored here;
the sweeps vary k and T around each variant's calibrated tau.

Bounds (``ScanNetReport.bounds``), to tell how much pooling *could* add:

* ``*_instance_mean``: the logits averaged over each ground-truth object -- the best any pooling
  that stays inside objects can do with these features (a voxel of no object keeps its own);
* ``teacher_ggp_*``: GeoPurify's own setting -- the student's pooling graphs applied to the
  teacher's features instead of the student's semantic head.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.core.geometry import geometric_embedding
from ov3d_ros.core.ggp import GGPConfig, build_pooling_graph, pooling_geometry
from ov3d_ros.core.segmenter import Segmenter
from ov3d_ros.eval.metrics import confusion_matrix, evaluate, restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_NAMES, FOREGROUND_EXCLUDED, nyu40_to_class_index

GGP_VARIANTS = ("ggp_uniform", "ggp_distance", "ggp_geometric", "ggp_learned")
WEIGHTS_OF = {
    "ggp_uniform": "uniform",
    "ggp_distance": "distance",
    "ggp_geometric": "affinity",
    "ggp_learned": "affinity",
}


@dataclass
class ScanScores:
    miou: float
    macc: float
    fmiou: float
    fmacc: float
    per_class_iou: dict[str, float | None] = field(default_factory=dict)

    def row(self) -> dict:
        return {"miou": self.miou, "macc": self.macc, "fmiou": self.fmiou, "fmacc": self.fmacc}


@dataclass
class ScanNetReport:
    variants: dict[str, ScanScores]  # teacher, student, ggp_* each at its own setting (``settings``)
    sweep: list[dict]  # {"variant", "k", "T", "miou", "fmiou"} rows
    shipped: GGPConfig
    points: np.ndarray  # (N, 3) for renders
    target: np.ndarray  # (N,) class index, -1 ignored
    predictions: dict[str, np.ndarray]  # variant -> (N,) class index
    voxels: int
    voxel_size: float
    bounds: dict[str, ScanScores] = field(default_factory=dict)  # module doc; needs instances / teacher
    settings: dict[str, GGPConfig] = field(default_factory=dict)  # the GGP each variant row was scored at


class ClassNameScorer:
    """Scores (V, 20) logits against a scan's ground truth, all classes and foreground."""

    def __init__(self, target: np.ndarray, point_to_voxel: np.ndarray) -> None:
        self.target = target
        self.point_to_voxel = point_to_voxel
        self.fg_target, fg_names = restrict_classes(target, CLASS_NAMES, FOREGROUND_EXCLUDED)
        self.fg_names = list(fg_names)
        self.fg_columns = [CLASS_NAMES.index(name) for name in fg_names]

    def predict(self, logits: torch.Tensor) -> np.ndarray:
        return logits.argmax(dim=1).cpu().numpy()[self.point_to_voxel]

    def __call__(self, logits: torch.Tensor) -> ScanScores:
        full = evaluate(self.target, self.predict(logits), CLASS_NAMES)
        fg_pred = logits[:, self.fg_columns].argmax(dim=1).cpu().numpy()[self.point_to_voxel]
        fg = evaluate(self.fg_target, fg_pred, self.fg_names)
        pct = lambda v: None if v is None else round(100.0 * float(v), 2)
        return ScanScores(
            pct(full.miou),
            pct(full.macc),
            pct(fg.miou),
            pct(fg.macc),
            {name: pct(v) for name, v in full.per_class_iou.items()},
        )


def variant_setting(variant: str, settings: dict[str, GGPConfig] | None, fallback: GGPConfig) -> GGPConfig:
    """A GGP variant's own (calibrated) setting, or ``fallback`` with that variant's weights."""
    return (settings or {}).get(variant) or replace(fallback, weights=WEIGHTS_OF[variant])


def scannet_report(
    segmenter: Segmenter,
    scan,
    class_embeddings: np.ndarray,
    teacher_logits: torch.Tensor | None,
    ks: tuple[int, ...] = (8, 16, 32, 64),
    iterations: tuple[int, ...] = (0, 2, 4, 8, 16, 24, 32, 48),
    settings: dict[str, GGPConfig] | None = None,
    unpooled_centering: float | None = None,
) -> ScanNetReport:
    """All variants on ``scan`` (an io Scan with NYU40 labels); ``teacher_logits`` (V, 20) on the
    same voxels (see :func:`teacher_logits_on`), or None to leave the teacher out.

    ``settings``: each GGP variant's own setting (calibrated on held-out rooms, never on this
    scan; ``ov3d_training.calibrate``), its centering included; a variant without one uses the
    segmenter's GGP. The k / T sweep keeps each variant's tau, centering and pooling cells (plus
    plain cells where those are coarse). ``student`` is the raw semantic head; with
    ``unpooled_centering`` (the rooms' best centering without pooling) a ``student_centered`` row
    scores that field unpooled too: the fair no-pooling baseline once centering is calibrated."""
    shipped = segmenter.config.ggp
    chosen = {v: variant_setting(v, settings, shipped) for v in GGP_VARIANTS}
    processed = process_uncentered(segmenter, scan)  # each variant centres the raw field by its own share
    device = segmenter.device
    text = F.normalize(torch.from_numpy(np.ascontiguousarray(class_embeddings, np.float32)).to(device), dim=1)
    field_logits: dict[float, torch.Tensor] = {}

    def logits_at(alpha: float) -> torch.Tensor:
        if alpha not in field_logits:
            with torch.inference_mode():
                field_logits[alpha] = processed.semantic.centered(alpha).logits(text).float()
        return field_logits[alpha]

    logits = logits_at(0.0)
    centers = torch.from_numpy(processed.voxels.centers).to(device)
    embeddings = pooling_embeddings(processed, device)
    target = nyu40_to_class_index(scan.labels)
    scorer = ClassNameScorer(target, processed.voxels.point_to_voxel)
    variants: dict[str, ScanScores] = {}
    predictions: dict[str, np.ndarray] = {}
    if teacher_logits is not None:
        variants["teacher"] = scorer(teacher_logits)
        predictions["teacher"] = scorer.predict(teacher_logits)
    variants["student"] = scorer(logits)
    predictions["student"] = scorer.predict(logits)
    if unpooled_centering:
        variants["student_centered"] = scorer(logits_at(float(unpooled_centering)))
        predictions["student_centered"] = scorer.predict(logits_at(float(unpooled_centering)))
    bounds: dict[str, ScanScores] = {}
    if scan.instances is not None:
        voxel_instance = majority_per_voxel(processed.voxels.point_to_voxel, scan.instances, processed.num_voxels)
        for name, source in (("teacher", teacher_logits), ("student", logits)):
            if source is not None:
                object_mean = instance_mean(source, voxel_instance)
                bounds[f"{name}_instance_mean"] = scorer(object_mean)
                predictions[f"{name}_instance_mean"] = scorer.predict(object_mean)

    # the sweep passes through every variant's own setting: its table row is read off there. A
    # variant calibrated to coarse-to-fine cells is swept on plain GGP (coarsen 1) as well.
    sweep: list[dict] = []
    wanted_t = set(iterations) | {c.iterations for c in chosen.values()}
    voxel_size = processed.voxels.voxel_size
    for k in sorted(set(ks) | {c.k for c in chosen.values()}):
        geometry = {}
        for variant in GGP_VARIANTS:
            own = chosen[variant]
            for factor in sorted({1, own.coarsen}):
                if factor not in geometry:
                    geometry[factor] = pooling_geometry(centers, k, factor, voxel_size)
                graph = build_pooling_graph(
                    centers,
                    embeddings[variant],
                    replace(own, k=k, coarsen=factor),
                    knn=geometry[factor],
                    cell_size=voxel_size,
                    device=device,
                )
                for t, pooled in graph.pool_stages(logits_at(own.centering), wanted_t):
                    scores = scorer(pooled)
                    sweep.append(
                        {
                            "variant": variant,
                            "k": k,
                            "coarsen": factor,
                            "T": t,
                            "tau": own.tau,
                            "centering": own.centering,
                            "miou": scores.miou,
                            "fmiou": scores.fmiou,
                        }
                    )
                    if (k, factor, t) == (own.k, own.coarsen, own.iterations):
                        variants[variant] = scores
                        predictions[variant] = scorer.predict(pooled)
                if (k, factor) == (own.k, own.coarsen) and teacher_logits is not None:
                    bounds[f"teacher_{variant}"] = scorer(graph.pool(teacher_logits, own.iterations))
    return ScanNetReport(
        variants,
        sweep,
        shipped,
        scan.points,
        target,
        predictions,
        processed.num_voxels,
        processed.voxels.voxel_size,
        bounds,
        chosen,
    )


def process_uncentered(segmenter: Segmenter, scan):
    """``segmenter.process(scan)`` with the semantic field left uncentred, whatever the segmenter's
    own centering: for callers that centre the raw field themselves, per setting."""
    return segmenter.process(scan, ggp=replace(segmenter.config.ggp, centering=0.0))


def class_confusion(target: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) share of each true class's points given each class: rows sum to 1 for the classes
    present, 0 for the absent ones. Which class a class is mistaken for is what the IoU bars do
    not show: it separates "the network never learned the class" (a whole class goes elsewhere,
    pooling cannot help) from "the class is fragmented" (what pooling repairs)."""
    counts = confusion_matrix(target, prediction, num_classes)[:, :num_classes].astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


# what the robot runs; the student's semantics perfectly grouped; the teacher's (where distillation lost a class)
CONFUSION_VARIANTS = ("ggp_learned", "student_instance_mean", "teacher_instance_mean")


def confusions(
    report: ScanNetReport, variants: tuple[str, ...] = CONFUSION_VARIANTS
) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant, per class present in the scan: the percentage of its points given each class
    (shares below 0.5 % left out), largest first."""
    present = [c for c in range(len(CLASS_NAMES)) if np.any(report.target == c)]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for variant in variants:
        if variant not in report.predictions:
            continue
        shares = class_confusion(report.target, report.predictions[variant], len(CLASS_NAMES))
        result[variant] = {
            CLASS_NAMES[c]: {
                CLASS_NAMES[j]: round(100.0 * float(shares[c, j]), 1)
                for j in np.argsort(-shares[c], kind="stable")
                if shares[c, j] >= 0.005
            }
            for c in present
        }
    return result


def instance_mean(logits: torch.Tensor, voxel_instance: np.ndarray) -> torch.Tensor:
    """(V, C) each voxel's logits replaced by the mean over its object (``voxel_instance`` > 0);
    voxels of no object (0) keep their own."""
    ids = torch.from_numpy(np.ascontiguousarray(voxel_instance, np.int64)).to(logits.device)
    _, slot = torch.unique(ids, return_inverse=True)
    sums = torch.zeros((int(slot.max()) + 1, logits.shape[1]), dtype=logits.dtype, device=logits.device)
    sums.index_add_(0, slot, logits)
    counts = torch.bincount(slot).to(logits.dtype)
    return torch.where((ids > 0)[:, None], sums[slot] / counts[slot, None], logits)


def pooling_embeddings(processed, device: torch.device) -> dict[str, torch.Tensor | None]:
    """The affinity embedding each GGP variant weighs with (None: its weights need none)."""
    voxels = processed.voxels
    return {
        "ggp_uniform": None,
        "ggp_distance": None,
        "ggp_geometric": geometric_embedding(voxels.centers, voxels.colors).to(device),
        "ggp_learned": processed.affinity,
    }


def teacher_logits_on(teacher_dir, segmenter: Segmenter, scan, class_embeddings: np.ndarray) -> torch.Tensor:
    """The teacher's (V, 20) logits on the voxels the segmenter makes of ``scan`` (same voxel size)."""
    from ..mpec.export import load_teacher
    from ..mpec.validate import teacher_text_features

    model, metadata = load_teacher(teacher_dir, segmenter.device)
    voxel_size = segmenter.voxel_size
    if abs(metadata.voxel_size - voxel_size) > 1e-9:
        raise ValueError(f"teacher voxel size {metadata.voxel_size} differs from the student's {voxel_size}")
    features, _ = teacher_text_features(
        model, scan.points, scan.colors, voxel_size, segmenter.device, segmenter.config.max_voxels
    )
    text = F.normalize(torch.from_numpy(np.ascontiguousarray(class_embeddings, np.float32)).to(segmenter.device), dim=1)
    return (features.float() @ text.T).float()


def majority_per_voxel(point_to_voxel: np.ndarray, labels: np.ndarray, num_voxels: int) -> np.ndarray:
    """(V,) the most frequent label among each voxel's points (vectorised: sort by voxel, label)."""
    order = np.lexsort((labels, point_to_voxel))
    voxel, label = point_to_voxel[order], labels[order]
    start = np.r_[True, (voxel[1:] != voxel[:-1]) | (label[1:] != label[:-1])]
    run_voxel, run_label = voxel[start], label[start]
    run_length = np.diff(np.r_[np.flatnonzero(start), len(voxel)])
    best = np.lexsort((-run_length, run_voxel))  # per voxel, longest run first
    first = np.r_[True, run_voxel[best][1:] != run_voxel[best][:-1]]
    out = np.zeros(num_voxels, dtype=np.int64)
    out[run_voxel[best][first]] = run_label[best][first]
    return out
