"""MPEC's training objective as one module, so DistributedDataParallel sees one ``forward``.

Per item (scan) b of the batch, with encoder features gathered per point for both views:

    L_b = w_p2e * L_point->entity  +  alpha * L_text->entity  +  beta * L_entity->text

the language terms only for scans with texts. The batch loss is the mean of L_b over the items:
a per-scan mean, so DDP's average over processes with equal local batches equals one process's
loss on the global batch.

Language branch (paper: "point features from both views are merged"): each point's feature is the
mean of its two views' encoder features; the VL-adapter maps it to text space; an entity's
embedding is the mean over its points. Only entities named by at least one text take part
(segments from over-segmentation and unannotated instances have no names: they are neither
positives nor trustworthy negatives).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.dataset import MPECBatch
from .config import MPECLossConfig
from .losses import entity_to_text_loss, point_to_entity_terms, retrieval_accuracy, text_to_entity_loss
from .model import MPECModel

METRIC_NAMES = ("loss_p2e", "loss_t2e", "loss_e2t", "acc_p2e", "acc_t2e", "acc_e2t", "frac_language")


class MPECObjective(nn.Module):
    def __init__(self, model: MPECModel, loss: MPECLossConfig) -> None:
        super().__init__()
        self.model = model
        self.loss_config = loss

    def forward(self, batch: MPECBatch) -> tuple[torch.Tensor, dict[str, tuple[float, float]]]:
        cfg = self.loss_config
        encoded = self.model.encode(batch.coords, batch.features, batch.batch_index, batch.voxel_masked)
        contrast = self.model.contrast_features(encoded)
        totals: list[torch.Tensor] = []
        sums = {name: [0.0, 0.0] for name in METRIC_NAMES}
        used_language = False
        for b in range(len(batch)):
            pu, pv, entity = batch.point_to_voxel_u[b], batch.point_to_voxel_v[b], batch.entity[b]
            p2e, p2e_acc = point_to_entity_terms(
                contrast[pu], contrast[pv], entity, batch.num_entities[b], cfg.point_temperature
            )
            total = cfg.point_to_entity * p2e
            _add(sums, "loss_p2e", float(p2e.detach()))
            _add(sums, "acc_p2e", float(p2e_acc))
            match = batch.match[b]
            _add(sums, "frac_language", float(len(match) > 0))
            if len(match):
                used_language = True
                named = torch.nonzero(match.any(dim=0)).flatten()  # entity ids with texts
                slot = torch.full((batch.num_entities[b],), -1, dtype=torch.long, device=entity.device)
                slot[named] = torch.arange(len(named), device=entity.device)
                point_slot = slot[entity]
                keep = point_slot >= 0
                merged = 0.5 * (encoded[pu[keep]] + encoded[pv[keep]])
                projected = self.model.text_features(merged)
                projected = projected if projected.dtype == torch.float64 else projected.float()
                sums_e = projected.new_zeros((len(named), projected.shape[1])).index_add_(
                    0, point_slot[keep], projected
                )
                counts = torch.bincount(point_slot[keep], minlength=len(named)).clamp(min=1).to(projected.dtype)
                entity_embeddings = sums_e / counts[:, None]
                texts = batch.text_embeddings[b]
                sub_match = match[:, named]
                t2e = text_to_entity_loss(entity_embeddings, texts, sub_match, cfg.language_temperature)
                e2t = entity_to_text_loss(
                    entity_embeddings, texts, sub_match, cfg.language_temperature, self.model.e2t_bias
                )
                total = total + cfg.alpha * t2e + cfg.beta * e2t
                acc_t2e, acc_e2t = retrieval_accuracy(entity_embeddings, texts, sub_match)
                _add(sums, "loss_t2e", float(t2e.detach()))
                _add(sums, "loss_e2t", float(e2t.detach()))
                _add(sums, "acc_t2e", acc_t2e)
                _add(sums, "acc_e2t", acc_e2t)
            totals.append(total)
        loss = torch.stack(totals).mean()
        if not used_language:
            # keep every parameter in the graph: DDP expects gradients for all of them each step
            loss = loss + 0.0 * (sum(p.sum() for p in self.model.adapter.parameters()) + self.model.e2t_bias)
        return loss, {name: (value[0], value[1]) for name, value in sums.items()}


def _add(sums: dict[str, list[float]], name: str, value: float) -> None:
    if value == value:  # skip NaN (e.g. no entity with texts)
        sums[name][0] += value
        sums[name][1] += 1.0
