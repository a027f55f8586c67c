"""The student on the held-out ScanNet scan, two ways.

Label-free (what selects ``student_best``): agreement with the teacher on the scan -- the
InfoNCE loss and accuracy (``nce_loss``, ``nce_acc``) on pairs mined once from the teacher's
features (fixed seed), and the semantic cosine to the teacher's VL features (``sem_cos``) --
combined with the training weights into ``objective``. No ground truth enters the choice of checkpoint, so the mIoU below stays an
honest held-out number.

With labels (to watch, and for the accuracy report): ScanNet-20 mIoU (%, ``ov3d_ros.eval``'s
protocol: class names as queries, cosine argmax) of the student's semantic head

* ``miou``: without pooling;
* ``miou_ggp``: after GGP with the learned affinities (the inference default k / tau / T);
* ``miou_uniform`` and ``miou_distance``: after GGP with plain geometric weights;

plus ``teacher_miou``, the teacher's own VL features without pooling (a reference, constant).
GGP runs on the (V, 20) logits of unit features, exactly as the Segmenter does (see
``ov3d_ros.core.ggp`` for why labels equal the feature path's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.core.features import input_features
from ov3d_ros.core.ggp import build_pooling_graph
from ov3d_ros.core.neighbors import knn_voxels
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.eval.metrics import evaluate
from ov3d_ros.eval.scannet20 import CLASS_NAMES, nyu40_to_class_index

from .config import DistillLossConfig, DistillValidationConfig, PairConfig
from .dataset import DistillBatch, DistillItem, collate_items
from .objective import DistillationObjective, batch_sparse_tensor
from .pairs import Pairs, anchor_neighbors, info_nce, mine_pairs
from .teacher import FrozenTeacher

VALIDATION_SEED = 12345  # the validation pairs are the same in every run


@dataclass
class _Prepared:
    batch: DistillBatch  # the scan as a one-item batch on the device
    point_to_voxel: np.ndarray
    target: np.ndarray  # (N,) ScanNet-20 index per point, -1 ignored
    centers: torch.Tensor
    knn: object  # neighbours for GGP (include_self), shared by the three poolings
    pairs: Pairs
    teacher_text: torch.Tensor  # (V, D)
    teacher_miou: float


class DistillValidator:
    def __init__(
        self,
        scan_path: Path,
        config: DistillValidationConfig,
        voxel_size: float,
        student_features: str,
        teacher: FrozenTeacher,
        class_embeddings: np.ndarray,
        pairs: PairConfig,
        loss: DistillLossConfig,
    ) -> None:
        self.scan_path = Path(scan_path)
        self.config = config
        self.voxel_size = float(voxel_size)
        self.student_features = student_features
        self.teacher = teacher
        self.class_embeddings = np.ascontiguousarray(class_embeddings, np.float32)
        self.pair_config = pairs
        self.loss_config = loss
        self._prepared: _Prepared | None = None

    def _prepare(self, device: torch.device) -> _Prepared:
        from ov3d_ros.io.files import load_scan

        scan = load_scan(self.scan_path)
        if scan.labels is None or scan.colors is None:
            raise ValueError(f"{self.scan_path}: the validation scan needs colours and NYU40 labels")
        target = nyu40_to_class_index(scan.labels)
        voxels = voxelize(scan.points, self.voxel_size, colors=scan.colors, max_voxels=self.config.max_voxels)
        rng = np.random.default_rng(VALIDATION_SEED)
        total = voxels.num_voxels
        anchors = np.sort(rng.choice(total, size=min(self.config.anchors, total), replace=False)).astype(np.int64)
        pool = np.sort(rng.choice(total, size=min(self.pair_config.negative_pool, total), replace=False)).astype(
            np.int64
        )
        teacher_input = self.teacher.input_features
        item = DistillItem(
            coords=voxels.coords,
            student_features=input_features(voxels, self.student_features),
            teacher_features=None if teacher_input == self.student_features else input_features(voxels, teacher_input),
            anchors=anchors,
            neighbors=anchor_neighbors(voxels.centers, anchors, self.pair_config.neighbors),
            pool=pool,
            semantic_index=None,
            scene_index=-1,
            deterministic=True,
            source=str(self.scan_path),
        )
        batch = collate_items([item]).to(device)
        inputs = batch.teacher_features if batch.teacher_features is not None else batch.student_features
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            sparse = batch_sparse_tensor(batch, len(self.teacher.model.config.channels), inputs)
            out = self.teacher.features(sparse, self.pair_config.teacher_space, with_text=True)
        pairs = mine_pairs(out.guide, batch.anchors[0], batch.neighbors[0], batch.pools[0], self.pair_config)
        centers = torch.from_numpy(voxels.centers).to(device)
        knn = knn_voxels(centers, self.config.ggp_k, include_self=True, cell_size=self.voxel_size)
        teacher_logits = self._logits(out.text, device)
        teacher_miou = self._miou(teacher_logits, voxels.point_to_voxel, target)
        return _Prepared(batch, voxels.point_to_voxel, target, centers, knn, pairs, out.text, teacher_miou)

    def _logits(self, semantic: torch.Tensor, device: torch.device) -> torch.Tensor:
        text = F.normalize(torch.from_numpy(self.class_embeddings).to(device), dim=1)
        return F.normalize(semantic.float(), dim=1) @ text.T

    @staticmethod
    def _miou(logits: torch.Tensor, point_to_voxel: np.ndarray, target: np.ndarray) -> float:
        prediction = logits.argmax(dim=1).cpu().numpy()[point_to_voxel]
        return 100.0 * evaluate(target, prediction, CLASS_NAMES).miou

    @torch.no_grad()
    def __call__(self, objective: DistillationObjective, device: torch.device) -> dict[str, float]:
        started = time.perf_counter()
        if self._prepared is None:
            self._prepared = self._prepare(device)
        p = self._prepared
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            affinity, semantic = objective.embed(p.batch, with_semantic=True)
        affinity, semantic = affinity.float(), semantic.float()
        nce = info_nce(affinity, p.pairs, self.loss_config.temperature)
        cos_sem = float(F.cosine_similarity(semantic, p.teacher_text, dim=1, eps=1e-6).mean())
        loss_aff = float(nce.loss)
        lc = self.loss_config
        metrics = {  # names differ from the training metrics': the two meet in the exported metadata
            "objective": lc.affinity_weight * loss_aff + lc.semantic_weight * (1.0 - cos_sem),
            "nce_loss": loss_aff,
            "nce_acc": nce.accuracy,
            "sem_cos": cos_sem,
        }
        logits = self._logits(semantic, device)
        metrics["miou"] = self._miou(logits, p.point_to_voxel, p.target)
        iterations = self.config.ggp_iterations
        for name, weights in (("miou_ggp", "affinity"), ("miou_uniform", "uniform"), ("miou_distance", "distance")):
            graph = build_pooling_graph(
                p.centers, affinity if weights == "affinity" else None, self.config.ggp(weights), knn=p.knn
            )
            metrics[name] = self._miou(graph.pool(logits, iterations), p.point_to_voxel, p.target)
        metrics["ggp_gain"] = metrics["miou_ggp"] - metrics["miou"]
        metrics["teacher_miou"] = p.teacher_miou
        metrics["seconds"] = time.perf_counter() - started
        return metrics
