"""The distillation objective as one module, so DistributedDataParallel sees one ``forward``.

Per scan b of the batch (the student runs once on the whole batch -- every voxel of every view --
and pairs are sampled from its output afterwards, so its receptive field is the one it has at
inference; GeoPurify's code ran it on the sampled voxels only):

    L_b = w_aff * InfoNCE(student affinity; pairs chosen in teacher space)
        + w_sem * mean over voxels (1 - cos(student semantic, teacher VL-adapter feature))

and the batch loss is the mean of L_b (a per-scan mean: DDP's average over processes with equal
local batches then equals one process's loss on the global batch). Pair mining and the losses run
in float32 even under autocast: top-k over similarities and a softmax at tau = 0.07 need the
precision.
"""

from __future__ import annotations

import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn

from ov3d_ros.core.network import StudentNet

from ..mpec.model import padded_sparse_tensor
from .config import DistillLossConfig, PairConfig
from .dataset import DistillBatch
from .pairs import info_nce, mine_pairs

METRIC_NAMES = ("loss_aff", "loss_sem", "acc_aff", "cos_sem", "valid_negatives", "teacher_positive_cos", "anchors_used")


def batch_sparse_tensor(
    batch: DistillBatch, levels: int, features: torch.Tensor | None = None
) -> spconv.SparseConvTensor:
    """The batch's voxels as one sparse tensor, grid padded to a multiple of the UNet's total stride.

    Why padded (``mpec.model.padded_sparse_tensor``, what the teacher was trained with): a
    stride-2 conv over an odd grid extent drops the last row, so border voxels would lose their
    deep features and a scan's output would depend on the other scans of its batch. Padding to a
    multiple of ``2 ** (levels - 1)`` keeps every voxel at every level; more padding changes
    nothing.
    """
    return padded_sparse_tensor(
        batch.coords, batch.student_features if features is None else features, batch.batch_index, levels
    )


class DistillationObjective(nn.Module):
    """Wraps the student; ``forward(batch, guide, text) -> (loss, metrics)``."""

    def __init__(self, student: StudentNet, loss: DistillLossConfig, pairs: PairConfig) -> None:
        super().__init__()
        self.student = student
        self.loss_config = loss
        self.pair_config = pairs

    def embed(self, batch: DistillBatch, with_semantic: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(V, 128) unit affinities of every voxel; semantic output (float32) of the semantic rows."""
        feats = self.student.backbone(batch_sparse_tensor(batch, len(self.student.config.backbone.channels)))
        affinity = F.normalize(self.student.affinity_head(feats).float(), dim=1)
        semantic = None
        if with_semantic:
            rows = batch.semantic_rows()
            semantic = self.student.semantic_head(feats if rows is None else feats[rows]).float()
        return affinity, semantic

    def forward(
        self, batch: DistillBatch, guide: torch.Tensor, text: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, tuple[float, float]]]:
        cfg = self.loss_config
        use_semantic = cfg.semantic_weight > 0
        if use_semantic and text is None:
            raise ValueError("the semantic term needs the teacher's text features")
        affinity, semantic = self.embed(batch, use_semantic)
        sums = {name: [0.0, 0.0] for name in METRIC_NAMES}
        totals = []
        with torch.autocast(affinity.device.type, enabled=False):
            if use_semantic:
                rows = batch.semantic_rows()
                target = text.float() if rows is None else text[rows].float()
                cosine = F.cosine_similarity(semantic, target, dim=1, eps=1e-6)
            semantic_start = 0
            for b in range(len(batch)):
                start, size = batch.offsets[b], batch.sizes[b]
                total = affinity.new_zeros(())
                if cfg.affinity_weight > 0:
                    pairs = mine_pairs(
                        guide[start : start + size],
                        batch.anchors[b],
                        batch.neighbors[b],
                        batch.pools[b],
                        self.pair_config,
                    )
                    result = info_nce(affinity[start : start + size], pairs, cfg.temperature)
                    total = total + cfg.affinity_weight * result.loss
                    if result.used_anchors:
                        _add(sums, "loss_aff", float(result.loss.detach()))
                        _add(sums, "acc_aff", result.accuracy)
                    if len(pairs):
                        _add(sums, "anchors_used", result.used_anchors / len(pairs))
                        _add(sums, "teacher_positive_cos", float(pairs.positive_similarity.mean()))
                    if pairs.valid.numel():
                        _add(sums, "valid_negatives", float(pairs.valid.float().mean()))
                if use_semantic:
                    count = size if batch.semantic_index[b] is None else len(batch.semantic_index[b])
                    cos_b = cosine[semantic_start : semantic_start + count]
                    semantic_start += count
                    loss_sem = 1.0 - cos_b.mean()
                    total = total + cfg.semantic_weight * loss_sem
                    _add(sums, "loss_sem", float(loss_sem.detach()))
                    _add(sums, "cos_sem", float(cos_b.detach().mean()))
                totals.append(total)
            loss = torch.stack(totals).mean()
        # every parameter must take part in every step (DDP); a head whose term is off gets a zero
        unused = []
        if not use_semantic:
            unused += list(self.student.semantic_head.parameters())
        if cfg.affinity_weight <= 0:
            unused += list(self.student.affinity_head.parameters())
        if unused:
            loss = loss + 0.0 * sum(p.sum() for p in unused)
        return loss, {name: (value[0], value[1]) for name, value in sums.items()}


def _add(sums: dict[str, list[float]], name: str, value: float) -> None:
    if value == value:  # NaN: nothing to report for this scan
        sums[name][0] += value
        sums[name][1] += 1.0
