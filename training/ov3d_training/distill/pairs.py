"""Contrastive pairs for the student's affinity head, chosen in the frozen teacher's feature space.

GeoPurify (Dou et al., arXiv 2510.02186, ``sample_contrastive_pairs_hybrid`` in its code) trains
the affinity network with InfoNCE (tau = 0.07) over, per scan, 4096 anchors, each with one
positive and 63 negatives: 48 "macro" negatives (the least teacher-similar points of the whole
scan) and 15 "micro" hard negatives (the least teacher-similar of the anchor's 96 nearest points).
What this module does, and where it departs from that code, with the reasons:

* **Positive = the most teacher-similar of the anchor's ``positive_candidates`` (16) nearest
  voxels**, not of the whole scan. GGP only ever weighs a voxel against its k nearest voxels
  (k = 16 at inference), so what the affinity must get right is *which of my neighbours belong
  with me*. A global positive is usually a far voxel of another instance of the same class:
  it teaches class similarity (the semantic head's job) and costs O(A * V). The anchor itself is
  never a candidate (neighbour lists exclude it).
* **Global negatives = the ``global_negatives`` (48) least teacher-similar voxels of a random
  pool** of ``negative_pool`` (4096) voxels, one pool per scan: O(A * pool) instead of the
  reference's O(A * V) similarity matrix, and the least similar of 4096 random voxels are as
  dissimilar as negatives need to be. The anchor and its positive are never taken.
* **Hard negatives = the ``hard_negatives`` (15) least teacher-similar of the anchor's
  ``hard_negative_neighbors`` (96) nearest voxels**, the positive excluded.
* **Margin**: a negative counts only if its teacher similarity is below the positive's minus
  ``margin`` (0.1); the others are masked out of the softmax. Deep inside a wall, the "least
  similar" neighbours are still wall: pushing them apart would teach GGP *not* to pool within the
  wall. ``margin = 0`` gives the reference's rule (everything but exact ties counts). An anchor
  left with no valid negative carries no signal and is left out of the mean.

Teacher space: by default the teacher's point-entity contrast features (``teacher_space =
"contrast"``). MPEC trains them to be alike within an entity and apart across entities -- the
structure GGP's weights need. The VL-adapter output (``"text"``) is pulled towards class names, so
two touching chairs look alike in it; it is the semantic head's target, not the affinity's.

Everything is vectorised over anchors. The spatial neighbours of the anchors are looked up by
:func:`anchor_neighbors` (a k-d tree queried for the anchors only; see its doc), in the data
workers. The student runs on the whole scan; pairs index into its full-scan output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import PairConfig

_CHUNK_ELEMENTS = 1 << 24  # bound on gathered (rows x neighbours x channels) elements per chunk


@dataclass
class Pairs:
    """Per anchor: one positive and N negatives (voxel indices into one scan).

    ``valid`` masks negatives that failed the margin, and padding: on a scan with fewer voxels
    than negatives asked for, rows are filled with excluded voxels (the anchor, the positive),
    always marked invalid. Only valid entries are negatives.
    """

    anchors: torch.Tensor  # (A,) int64
    positives: torch.Tensor  # (A,) int64
    negatives: torch.Tensor  # (A, N) int64: global negatives first, then hard negatives
    valid: torch.Tensor  # (A, N) bool
    positive_similarity: torch.Tensor  # (A,) teacher cosine of (anchor, positive)
    num_global: int  # the first num_global columns of ``negatives`` are the global ones

    def __len__(self) -> int:
        return len(self.anchors)


def anchor_neighbors(centers: np.ndarray, anchors: np.ndarray, k: int) -> np.ndarray:
    """(A, k') int64: the k nearest *other* voxels of each anchor, nearest first; k' = min(k, V - 1).

    Same answer as ``ov3d_ros.core.neighbors.knn_voxels(centers, k, include_self=False)[anchors]``
    (tested), but the k-d tree is queried for the A anchors only: knn_voxels answers for every
    voxel, which for 4096 anchors of a 50k-voxel scan at k = 96 means V / A, about twelve times
    as many k = 96 queries for the same answer. (``python -m ov3d_training.distill.bench`` times
    a training item, anchor neighbours included, as ``data_item_s``.) Self is removed by index
    (its first occurrence), not by position, so coincident centres cannot make an anchor its own
    neighbour.
    """
    from scipy.spatial import cKDTree

    centers = np.asarray(centers, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.int64)
    total = len(centers)
    k_out = max(0, min(int(k), total - 1))
    if k_out == 0 or len(anchors) == 0:
        return np.zeros((len(anchors), k_out), np.int64)
    _, idx = cKDTree(centers).query(centers[anchors], k=k_out + 1, workers=1)
    idx = np.asarray(idx, np.int64).reshape(len(anchors), k_out + 1)
    is_self = idx == anchors[:, None]
    drop = is_self & (np.cumsum(is_self, axis=1) == 1)
    drop[~drop.any(axis=1), k_out] = True  # self not found among the k + 1: drop the farthest
    return idx[~drop].reshape(len(anchors), k_out)


def _gathered_dot(guide: torch.Tensor, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(A, K): <rows[a], guide[index[a, j]]>, in chunks so (A, K, C) is never built at once."""
    width = max(1, index.shape[1] * guide.shape[1])
    chunk = max(1, _CHUNK_ELEMENTS // width)
    parts = [
        torch.bmm(guide[index[s : s + chunk]], rows[s : s + chunk, :, None]).squeeze(2)
        for s in range(0, len(index), chunk)
    ]
    return torch.cat(parts) if parts else rows.new_zeros((0, index.shape[1]))


@torch.no_grad()
def mine_pairs(
    guide: torch.Tensor,
    anchors: torch.Tensor,
    neighbors: torch.Tensor,
    pool: torch.Tensor,
    config: PairConfig,
) -> Pairs:
    """Choose positives and negatives for ``anchors`` in the teacher space ``guide`` (module doc).

    guide:     (V, C) teacher features of the scan's voxels, L2-normalised here.
    anchors:   (A,) voxel indices.
    neighbors: (A, K) each anchor's nearest other voxels, nearest first (:func:`anchor_neighbors`).
    pool:      (P,) random voxel indices, the candidates for global negatives.
    """
    device = guide.device
    unit = torch.nn.functional.normalize(guide.float(), dim=1)
    anchors = anchors.to(device).long()
    neighbors = neighbors.to(device).long()
    pool = pool.to(device).long()
    count, k = neighbors.shape
    if count == 0 or k == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return Pairs(
            empty,
            empty.clone(),
            torch.zeros((0, 0), dtype=torch.long, device=device),
            torch.zeros((0, 0), dtype=torch.bool, device=device),
            unit.new_zeros(0),
            0,
        )
    rows = unit[anchors]
    similarity = _gathered_dot(unit, rows, neighbors)  # (A, K) teacher cosine to each neighbour

    # positive: the most similar of the nearest candidates
    k_pos = min(config.positive_candidates, k)
    best = similarity[:, :k_pos].argmax(dim=1, keepdim=True)
    positives = neighbors.gather(1, best).squeeze(1)
    positive_similarity = similarity.gather(1, best).squeeze(1)
    threshold = positive_similarity[:, None] - config.margin

    negatives, valid = [], []
    num_global = 0
    if config.global_negatives > 0 and len(pool) > 0:
        pool_similarity = rows @ unit[pool].T  # (A, P)
        excluded = (pool[None, :] == anchors[:, None]) | (pool[None, :] == positives[:, None])
        pool_similarity = pool_similarity.masked_fill(excluded, float("inf"))
        num_global = min(config.global_negatives, len(pool))
        values, columns = torch.topk(pool_similarity, num_global, dim=1, largest=False, sorted=True)
        negatives.append(pool[columns])
        valid.append(values < threshold)  # inf (excluded) never passes
    k_hard = min(config.hard_negative_neighbors, k)
    num_hard = min(config.hard_negatives, k_hard - 1)
    if num_hard > 0:
        local = similarity[:, :k_hard].scatter(1, best, float("inf"))  # the positive is not a negative
        values, columns = torch.topk(local, num_hard, dim=1, largest=False, sorted=True)
        negatives.append(neighbors.gather(1, columns))
        valid.append(values < threshold)
    if not negatives:
        negatives.append(torch.zeros((count, 0), dtype=torch.long, device=device))
        valid.append(torch.zeros((count, 0), dtype=torch.bool, device=device))
    return Pairs(anchors, positives, torch.cat(negatives, 1), torch.cat(valid, 1), positive_similarity, num_global)


@dataclass
class InfoNCEResult:
    loss: torch.Tensor  # scalar: mean over anchors with at least one valid negative
    accuracy: float  # fraction of those anchors whose positive beats every valid negative
    used_anchors: int


def info_nce(embeddings: torch.Tensor, pairs: Pairs, temperature: float = 0.07) -> InfoNCEResult:
    """InfoNCE of L2-normalised ``embeddings`` (V, D) over ``pairs``: per anchor,
    ``-log softmax([cos(a, p), cos(a, n_1), ...] / tau)[0]`` with invalid negatives masked out.

    Embeddings are normalised here as well (the student's affinity head already outputs unit
    vectors; normalising again is free and makes the function safe for any input).
    """
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    used = (
        pairs.valid.any(dim=1) if pairs.valid.numel() else torch.zeros(len(pairs), dtype=torch.bool, device=unit.device)
    )
    if not bool(used.any()):
        return InfoNCEResult(unit.sum() * 0.0, float("nan"), 0)
    anchors = pairs.anchors[used]
    a = unit[anchors]
    positive = (a * unit[pairs.positives[used]]).sum(dim=1, keepdim=True)  # (U, 1)
    negative = _gathered_dot(unit, a, pairs.negatives[used])  # (U, N)
    negative = negative.masked_fill(~pairs.valid[used], float("-inf"))
    logits = torch.cat([positive, negative], dim=1) / temperature
    loss = (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()
    with torch.no_grad():
        accuracy = float((positive[:, 0] > negative.max(dim=1).values).float().mean())
    return InfoNCEResult(loss, accuracy, int(used.sum()))
