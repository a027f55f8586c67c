"""Calibrate GGP's temperature and passes for a trained student on held-out simulated rooms.

Why: tau sets how sharply the affinity cosines gate, and what is "sharp" depends on the
embedding. The student's affinities are trained with InfoNCE, which pushes a voxel's cosine to
its positive near 1 and leaves other same-object neighbours lower; at a tau meant for another
embedding the softmax then puts almost all weight on the voxel itself (W close to I) and
pooling barely moves the semantics. So tau (and the passes T that go with it) are a property
of the trained model, picked per model -- and never on the real scan the report scores.

Protocol: labelled simulated rooms that were *not* training data (``ov3d-train sim --start``
beyond the training range), thinned to the density the model trained at (below), the ScanNet-20
names as queries, the report's metric (closed-set
cosine argmax); per GGP variant and setting, one confusion matrix over all rooms (dataset-level
mIoU, as ScanNet's benchmark). k stays at the segmenter's (a latency choice, not a quality one);
tau is searched for the variants whose weights are a softmax of cosines, T and the pooling cell
(``coarsen``: 1 = plain GGP, f > 1 = coarse-to-fine GGP on cells f voxels wide, see
``ov3d_ros.core.ggp.cell_graph``) for all. Each
variant gets its own best setting, so the plain-geometry baselines are calibrated as fairly as
the learned affinities. Ties go to fewer passes (cheaper), then to the smaller tau. The largest T
of the grid (48) is the pass budget, not a plateau: on rooms at training density the learned
affinities of the previous default model (v2) kept gaining a little up to T 96, at twice the
pooling cost (pooling time is linear in T), which the budget does not buy.

Why thin the rooms: the student trains on items that keep a random 35-100 % of their 5 cm voxels
(``augment.keep_ratio``: real scans are sparser than fused simulated depth), and its BatchNorm
statistics are those of such items. A rendered room has every voxel; on it the v2 student named
much of the wall "door" and left pooling little to do (both its unpooled score and the
object-mean ceiling were low). The same rooms with a random share of voxels kept, drawn from the
model's own recipe, scored clearly higher on both: they look to the network like what it was
trained for, and like a real scan. (The v3 student is much less sensitive to density.) The
scores, and how the cause was found, are in docs/accuracy.md, "Calibration rooms at the model's
training density"; a calibration records its own in ``ggp_calibration.json``. Each room's draw
is seeded by its position in the sorted room list, so a calibration is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.core.ggp import GGPConfig, build_pooling_graph, pooling_geometry
from ov3d_ros.core.segmenter import Segmenter
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.eval.metrics import confusion_matrix, metrics_from_confusion
from ov3d_ros.eval.scannet20 import CLASS_NAMES, nyu40_to_class_index
from ov3d_ros.io.scan import Scan

from ..report.scannet import (
    GGP_VARIANTS,
    WEIGHTS_OF,
    instance_mean,
    majority_per_voxel,
    pooling_embeddings,
    process_uncentered,
)

DEFAULT_TAUS = (0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
DEFAULT_ITERATIONS = (0, 4, 8, 16, 24, 32, 48)
DEFAULT_COARSEN = (1, 2, 3, 4)  # cell widths in voxels: 1 is plain GGP, > 1 coarse-to-fine
DEFAULT_CENTERING = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of the cloud's mean feature removed (query.py)
CALIBRATION_FILE = "ggp_calibration.json"
THINNING_SEED = 1000  # rooms' voxel subsets: numpy.random.default_rng([THINNING_SEED, room position])


@dataclass
class Calibration:
    k: int
    rooms: list[str]
    points: int  # labelled points scored per setting
    table: list[dict]  # {"variant", "coarsen", "tau", "T", "miou"} for every setting tried
    best: dict[str, dict] = field(default_factory=dict)  # variant -> {"coarsen", "tau", "T", "miou"}
    no_pooling: float | None = None  # mIoU of the raw semantic head on the same rooms
    # mIoU with each true object's voxels given their object's mean logits: the most any pooling
    # can reach on these rooms with this semantic head (how much the rooms can tell settings apart)
    ceiling: float | None = None
    keep_ratio: tuple[float, float] = (1.0, 1.0)  # share of each room's voxels kept (thin_like_training)
    # no pooling at its best centering on these rooms ({"centering", "miou"}): the fair unpooled baseline
    no_pooling_centered: dict | None = None

    def ggp(self, variant: str = "ggp_learned") -> GGPConfig:
        """The calibrated GGPConfig of one variant."""
        return _variant_setting(variant, self.k, self.best[variant])

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "rooms": self.rooms,
            "points": self.points,
            "keep_ratio": list(self.keep_ratio),
            "no_pooling": self.no_pooling,
            "no_pooling_centered": self.no_pooling_centered,
            "ceiling": self.ceiling,
            "best": self.best,
            "table": self.table,
        }


def variant_settings(metadata) -> dict[str, GGPConfig]:
    """Each GGP variant's calibrated setting recorded in a checkpoint's metadata (``ggp.calibration``),
    empty when the checkpoint was not calibrated."""
    recorded = ((metadata.ggp or {}).get("calibration") or {}).get("variants") or {}
    k = int((metadata.ggp or {}).get("k", 0))
    return {variant: _variant_setting(variant, k, best) for variant, best in recorded.items() if variant in WEIGHTS_OF}


def unpooled_centering(metadata) -> float | None:
    """The centering at which no pooling scored best in the checkpoint's calibration
    (``ggp.calibration.no_pooling_centered``), or None when none is recorded."""
    recorded = ((metadata.ggp or {}).get("calibration") or {}).get("no_pooling_centered") or {}
    return recorded.get("centering")


def model_record(calibration: Calibration, variant: str = "ggp_learned") -> dict:
    """What ``model.json`` keeps under ``ggp``: the node's setting and how it was chosen."""
    return {
        **calibration.ggp(variant).record(),
        "calibration": {
            "method": "best dataset-level ScanNet-20 mIoU over coarsen x tau x T x centering on held-out simulated rooms (ov3d-train calibrate)",
            "rooms": calibration.rooms,
            "points": calibration.points,
            "keep_ratio": list(calibration.keep_ratio),
            "no_pooling_miou": calibration.no_pooling,
            "no_pooling_centered": calibration.no_pooling_centered,
            "ceiling_miou": calibration.ceiling,
            "variants": calibration.best,
        },
    }


def _variant_setting(variant: str, k: int, best: dict) -> GGPConfig:
    """One variant's GGPConfig from a calibration's ``{"tau", "T", "coarsen", ...}`` entry
    (calibrations from before coarse-to-fine pooling have no "coarsen": plain GGP)."""
    return GGPConfig(
        k=k,
        tau=float(best["tau"]),
        iterations=int(best["T"]),
        weights=WEIGHTS_OF[variant],
        coarsen=int(best.get("coarsen", 1)),
        centering=float(best.get("centering", 0.0)),
    )


def simulated_room_scan(path: str | Path) -> Scan:
    """The fused map of one simulated recording with NYU40 labels (the sim's classes mapped by their
    ``nyu40_id``; classes without one become 0, i.e. ignored) and its entity ids."""
    from ..data.sources import Source, load_source

    loaded = load_source(Source(Path(path).resolve(), "bag"))
    scan = loaded.scan
    classes = (loaded.annotations or {}).get("classes")
    if scan.labels is None or not classes:
        raise ValueError(f"{path}: a calibration room needs per-point class labels and the annotations' class table")
    lookup = np.zeros(max(int(scan.labels.max(initial=0)), max(int(c["id"]) for c in classes)) + 1, dtype=np.int64)
    for entry in classes:
        lookup[int(entry["id"])] = int(entry.get("nyu40_id") or 0)
    scan.labels = lookup[np.asarray(scan.labels, dtype=np.int64)].astype(np.int32)
    return scan


def training_keep_ratio(metadata) -> tuple[float, float]:
    """The share of voxels the student's training items kept (its recipe's ``augment.keep_ratio``);
    (1, 1) when the checkpoint does not record one."""
    recipe = (metadata.extra or {}).get("recipe") or {}
    value = ((recipe.get("data") or {}).get("augment") or {}).get("keep_ratio")
    return (float(value[0]), float(value[1])) if value else (1.0, 1.0)


def check_keep_ratio(keep_ratio, name: str = "keep_ratio") -> tuple[float, float]:
    """``keep_ratio`` as (low, high) floats; ValueError unless 0 < low <= high <= 1."""
    low, high = (float(v) for v in keep_ratio)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"{name} must satisfy 0 < LOW <= HIGH <= 1, got {list(keep_ratio)}")
    return low, high


def thin_like_training(
    scan: Scan, keep_ratio: tuple[float, float], voxel_size: float, rng: np.random.Generator
) -> Scan:
    """The points of a random subset of ``scan``'s voxels -- a share uniform in ``keep_ratio``, the
    same draw as a training item's (``augment.thin_points`` over its one-point-per-voxel scene)."""
    from ..data.augment import thin_points

    voxels = voxelize(scan.points, voxel_size)
    kept = thin_points(voxels.num_voxels, keep_ratio, rng)
    if kept is None:
        return scan
    keep_voxel = np.zeros(voxels.num_voxels, dtype=bool)
    keep_voxel[kept] = True
    return scan.subset(keep_voxel[voxels.point_to_voxel])


def calibrate_ggp(
    segmenter: Segmenter,
    rooms: list[tuple[str, Scan]],
    class_embeddings: np.ndarray,
    taus: tuple[float, ...] = DEFAULT_TAUS,
    iterations: tuple[int, ...] = DEFAULT_ITERATIONS,
    progress: bool = False,
    keep_ratio: tuple[float, float] = (1.0, 1.0),
    coarsen: tuple[int, ...] = (1,),
    centering: tuple[float, ...] = (0.0,),
) -> Calibration:
    """Best coarsen / tau / T / centering per GGP variant over ``rooms`` (name, Scan with NYU40
    labels), each room first thinned to ``keep_ratio`` of its voxels (:func:`thin_like_training`);
    module doc."""
    if not rooms:
        raise ValueError("calibration needs at least one labelled room")
    low, high = check_keep_ratio(keep_ratio)
    k = segmenter.config.ggp.k
    text = F.normalize(torch.from_numpy(np.ascontiguousarray(class_embeddings, np.float32)).to(segmenter.device), dim=1)
    confusions: dict[tuple, np.ndarray] = {}
    ceiling = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES) + 1), np.int64)
    with_objects = True
    points = 0
    bar = _progress(len(rooms), progress)
    for position, (_, scan) in enumerate(rooms):
        scan = thin_like_training(
            scan, keep_ratio, segmenter.voxel_size, np.random.default_rng([THINNING_SEED, position])
        )
        processed = process_uncentered(segmenter, scan)  # each grid value centres the raw field here
        with torch.inference_mode():
            raw = processed.semantic.logits(text).float()
            logits = {a: raw if a == 0 else processed.semantic.centered(a).logits(text).float() for a in centering}
        target = nyu40_to_class_index(scan.labels)
        points += int((target >= 0).sum())
        voxels = processed.voxels
        if scan.instances is None:
            with_objects = False
        else:
            voxel_object = majority_per_voxel(voxels.point_to_voxel, scan.instances, processed.num_voxels)
            at_ceiling = instance_mean(raw, voxel_object).argmax(dim=1).cpu().numpy()[voxels.point_to_voxel]
            ceiling += confusion_matrix(target, at_ceiling, len(CLASS_NAMES))
        centers = torch.from_numpy(voxels.centers).to(segmenter.device)
        embeddings = pooling_embeddings(processed, segmenter.device)
        for factor in coarsen:  # the neighbours (or cells) are geometry: shared by every variant
            geometry = pooling_geometry(centers, k, factor, voxels.voxel_size)
            for variant in GGP_VARIANTS:
                variant_taus = taus if WEIGHTS_OF[variant] == "affinity" else (segmenter.config.ggp.tau,)
                for tau in variant_taus:
                    config = GGPConfig(k=k, tau=float(tau), iterations=0, weights=WEIGHTS_OF[variant], coarsen=factor)
                    graph = build_pooling_graph(
                        centers,
                        embeddings[variant],
                        config,
                        knn=geometry,
                        cell_size=voxels.voxel_size,
                        device=segmenter.device,
                    )
                    for alpha, field_logits in logits.items():
                        for t, pooled in graph.pool_stages(field_logits, iterations):
                            if t == 0 and factor != coarsen[0]:
                                continue  # T = 0 is no pooling whatever the cells: score it once
                            prediction = pooled.argmax(dim=1).cpu().numpy()[voxels.point_to_voxel]
                            key = (variant, factor, float(tau), t, float(alpha))
                            counts = confusion_matrix(target, prediction, len(CLASS_NAMES))
                            confusions[key] = confusions[key] + counts if key in confusions else counts
        bar.update(1)
    bar.close()
    table = [
        {
            "variant": v,
            "coarsen": f,
            "tau": tau,
            "T": t,
            "centering": a,
            "miou": round(100.0 * metrics_from_confusion(c, CLASS_NAMES).miou, 2),
        }
        for (v, f, tau, t, a), c in confusions.items()
    ]
    best = {}
    for variant in GGP_VARIANTS:
        rows = [r for r in table if r["variant"] == variant]
        # ties: fewer passes (cheaper), smaller tau, plainer cells, less centering
        top = max(rows, key=lambda r: (r["miou"], -r["T"], -r["tau"], -r["coarsen"], -r["centering"]))
        best[variant] = {
            "coarsen": top["coarsen"],
            "tau": top["tau"],
            "T": top["T"],
            "centering": top["centering"],
            "miou": top["miou"],
        }
    unpooled = [r for r in table if r["T"] == 0]  # T = 0 is the same for every variant
    raw = next((r["miou"] for r in unpooled if r["centering"] == 0.0), None)
    top_raw = max(unpooled, key=lambda r: (r["miou"], -r["centering"]), default=None)
    centered = {"centering": top_raw["centering"], "miou": top_raw["miou"]} if top_raw else None
    top = round(100.0 * metrics_from_confusion(ceiling, CLASS_NAMES).miou, 2) if with_objects else None
    return Calibration(
        k, [name for name, _ in rooms], points, table, best, raw, top, (float(low), float(high)), centered
    )


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="calibrating GGP", unit="room", disable=not enabled)
