"""GGP as GeoPurify's released code computes it: the reference the fast path is timed and tested against.

GeoPurify (``evaluate_scene`` in ``models/affinity_module.py``) pools its per-voxel features so:

1. neighbours by brute force: faiss ``IndexFlatL2`` over all voxels, k + 1 searched and the
   first (the voxel itself) dropped;
2. the cosine of the unit affinity embeddings of each (voxel, neighbour) pair, by gathering both;
3. weights: a softmax over the k neighbours of 20 * cos, i.e. cos / tau with tau = 0.05;
4. W as a COO matrix (``torch.sparse_coo_tensor``, not coalesced);
5. ``torch.sparse.mm(W, F)`` 19 times (once, then a loop of 18) over F, its 512-d semantic
   features with 6 geometry channels (colour, normal) appended, all float32.

:func:`reference_ggp` does each step the same way at the same cost: float32 throughout, O(V^2)
distances in the matrix-product form (x^2 + y^2 - 2xy) -- faiss's ``IndexFlatL2`` when the
optional faiss-cpu is installed, as GeoPurify calls it, else ``torch.cdist`` in its matrix-product
mode, the same arithmetic -- an uncoalesced COO W and ``torch.sparse.mm``. One departure: the
cosines are computed a block of voxels at a time, because gathering all V * k pairs at once (as
GeoPurify does on its GPU) takes 10 GB at V = 100k, k = 96; the arithmetic is the same.

It also covers what GeoPurify does not, so the tests can check the fast path for every
:class:`~ov3d_ros.core.ggp.GGPConfig` on voxels against it: the voxel kept among its own
neighbours (``include_self``), distance and uniform weights, and ``exact_distances``: distances
in float64 by differences, the k-d tree's arithmetic, so that neighbours nearly as far as the
k-th are ranked as the fast path's k-d tree ranks them (the matrix-product form's rounding can
swap two whose distances differ by less than it, and so pick another k-th neighbour).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch

from ov3d_ros.core.neighbors import KNN

AFFINITY_SHARPEN = 20.0  # GeoPurify's softmax factor on the cosines: 1 / tau
_DISTANCE_ROWS = 1024  # query rows per block of the torch distance matrix (rows x V float32)
_COSINE_ROWS = 2048  # voxels per block of gathered embeddings (rows x k x C float32)


class ReferenceGGP(NamedTuple):
    pooled: torch.Tensor  # (V, D) float32: the features after the products
    knn: KNN  # the neighbours it used, torch (V, k), nearest first


def knn_backend() -> str:
    """Which brute-force search :func:`reference_knn` uses on this machine."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch.cdist (use_mm_for_euclid_dist)"
    return "faiss IndexFlatL2"


def reference_knn(positions, k: int, *, include_self: bool, exact_distances: bool = False) -> KNN:
    """k nearest voxels of every voxel from all pairwise distances (O(V^2), by design).

    k + 1 are searched and the voxel itself is then dropped or put first; a voxel missing from
    its own list (a duplicate point tied with it) is put back in place of the last one.
    """
    pos = torch.as_tensor(np.asarray(positions, dtype=np.float32))
    # about the origin: x^2 + y^2 - 2xy in float32 loses precision with |x|^2 (GeoPurify's small
    # integer voxel coordinates have no such loss); distances do not change, the cost neither
    pos = pos - pos.mean(dim=0) if len(pos) else pos
    total = len(pos)
    k = max(0, min(int(k), total if include_self else total - 1))
    width = min(k + 1, total)
    if total == 0 or k == 0:
        empty = torch.zeros((total, k), dtype=torch.int64)
        return KNN(empty, empty.float())
    if exact_distances:
        idx, dist = _topk_blocks(pos.double(), width, mode="donot_use_mm_for_euclid_dist")
    elif knn_backend().startswith("faiss"):
        idx, dist = _faiss_search(pos, width)
    else:
        idx, dist = _topk_blocks(pos, width, mode="use_mm_for_euclid_dist")
    idx, dist = _place_self(idx, dist.float())
    return KNN(idx[:, :k], dist[:, :k]) if include_self else KNN(idx[:, 1 : k + 1], dist[:, 1 : k + 1])


def reference_weights(embeddings, knn: KNN, tau: float, kind: str = "affinity") -> torch.Tensor:
    """(V, k) float32 weights of each voxel's neighbours: softmax(cos / tau) for "affinity"
    (cosines by gathering both embeddings), softmax(-d^2 / sigma^2) for "distance" (sigma: the
    median distance to the k-th neighbour), 1/k for "uniform"."""
    neighbors = knn.indices
    if kind == "affinity":
        z = torch.nn.functional.normalize(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)), dim=1)
        cosine = torch.cat(
            [
                (z[s : s + _COSINE_ROWS, None, :] * z[neighbors[s : s + _COSINE_ROWS]]).sum(dim=2)
                for s in range(0, len(neighbors), _COSINE_ROWS)
            ]
        )
        return torch.softmax(cosine / float(tau), dim=1)
    if kind == "distance":
        sigma = max(float(knn.distances.max(dim=1).values.median()), 1e-12)
        return torch.softmax(-((knn.distances / sigma) ** 2), dim=1)
    if kind == "uniform":
        return torch.full(neighbors.shape, 1.0 / neighbors.shape[1], dtype=torch.float32)
    raise ValueError(f"unknown weights {kind!r}")


def reference_matrix(neighbors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """W as GeoPurify builds it: COO, row i repeated k times, columns the neighbours, not coalesced."""
    total, k = neighbors.shape
    rows = torch.arange(total).repeat_interleave(k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "sparse invariant checks are implicitly disabled"
        return torch.sparse_coo_tensor(torch.stack([rows, neighbors.reshape(-1)]), weights.reshape(-1), (total, total))


def reference_ggp(
    features,
    embeddings,
    positions,
    k: int,
    tau: float,
    iterations: int,
    *,
    include_self: bool = False,
    weights: str = "affinity",
    exact_distances: bool = False,
) -> ReferenceGGP:
    """Brute-force kNN, weights, COO W, then ``iterations`` products ``torch.sparse.mm(W, F)``.

    features: (V, D) the values pooled (GeoPurify: 512 semantic + 6 geometry channels).
    Defaults are GeoPurify's (self left out); ``GGPConfig.paper()`` gives its k, tau and T.
    """
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32))
    knn = reference_knn(positions, k, include_self=include_self, exact_distances=exact_distances)
    if knn.indices.shape[1] == 0:
        return ReferenceGGP(feats.clone(), knn)
    matrix = reference_matrix(knn.indices, reference_weights(embeddings, knn, tau, weights))
    pooled = feats
    for _ in range(iterations):
        pooled = torch.sparse.mm(matrix, pooled)
    return ReferenceGGP(pooled if iterations else feats.clone(), knn)


# ----------------------------------------------------------------------------------- internals
def _faiss_search(pos: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())  # the same threads as the torch side
    points = np.ascontiguousarray(pos.numpy(), dtype=np.float32)
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    squared, idx = index.search(points, width)
    return torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(np.sqrt(np.maximum(squared, 0.0)))


def _topk_blocks(pos: torch.Tensor, width: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    idx, dist = [], []
    for start in range(0, len(pos), _DISTANCE_ROWS):
        d = torch.cdist(pos[start : start + _DISTANCE_ROWS], pos, compute_mode=mode)
        values, index = torch.topk(d, width, dim=1, largest=False, sorted=True)
        idx.append(index)
        dist.append(values)
    return torch.cat(idx), torch.cat(dist)


def _place_self(idx: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row with the voxel itself first (distance 0), the others in their order."""
    rows = torch.arange(len(idx))[:, None]
    is_self = idx == rows
    order = torch.argsort((~is_self).to(torch.int8), dim=1, stable=True)
    idx, dist = idx.gather(1, order), dist.gather(1, order)
    missing = ~is_self.any(dim=1)
    if missing.any():
        idx[missing] = torch.cat([rows[missing], idx[missing, :-1]], dim=1)
        dist[missing] = torch.cat([torch.zeros((int(missing.sum()), 1)), dist[missing, :-1]], dim=1)
    dist[:, 0] = 0.0
    return idx, dist
