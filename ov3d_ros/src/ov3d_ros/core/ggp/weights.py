"""The row weights of W: affinity (GeoPurify's), distance and uniform (the plain-geometry baselines).

Each function returns (V, k) float32 weights aligned with the given (V, k) neighbour lists, every
row summing to 1 (W is row-stochastic: pooling a constant field leaves it constant).
"""

from __future__ import annotations

import warnings

import torch

from .sparse import rows_sorted, torch_csr

_GATHER_ROWS = 8192  # rows per chunk when the cosines fall back to gathers (bounds (rows, k, C))


def affinity_weights(embeddings: torch.Tensor, neighbors: torch.Tensor, tau: float) -> torch.Tensor:
    """w_ij = softmax over j in N(i) of cos(z_i, z_j) / tau; (V, k), aligned with ``neighbors``.

    Embeddings are L2-normalised here (zero rows stay zero, i.e. cosine 0 to everything).
    """
    embeddings = torch.as_tensor(embeddings)
    neighbors = torch.as_tensor(neighbors, device=embeddings.device).long()
    total, k = neighbors.shape
    if embeddings.ndim != 2 or len(embeddings) != total:
        raise ValueError(f"embeddings must be ({total}, C), got shape {tuple(embeddings.shape)}")
    if total == 0 or k == 0:
        return torch.zeros((total, k), dtype=torch.float32, device=embeddings.device)
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    if rows_sorted(neighbors):  # the graph's layout already: no sort, no scatter back
        return torch.softmax(_sampled_dot(unit, neighbors) / float(tau), dim=1)
    sorted_nb, order = torch.sort(neighbors, dim=1)
    sorted_w = torch.softmax(_sampled_dot(unit, sorted_nb) / float(tau), dim=1)
    return torch.empty_like(sorted_w).scatter_(1, order, sorted_w)


def distance_weights(distances: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Plain-geometry baseline: softmax over neighbours of -d^2 / sigma^2.

    sigma defaults to the median distance to the k-th neighbour (the typical neighbourhood
    radius), so the weights fall off over the neighbourhood whatever the voxel size.
    """
    distances = torch.as_tensor(distances).float()
    if distances.numel() == 0:
        return distances.clone()
    if sigma is None:
        sigma = float(distances.max(dim=1).values.median())  # rows need not be sorted
    sigma = max(float(sigma), 1e-12)
    return torch.softmax(-((distances / sigma) ** 2), dim=1)


def uniform_weights(neighbors: torch.Tensor) -> torch.Tensor:
    """Plain-geometry baseline: every neighbour weighs 1/k."""
    neighbors = torch.as_tensor(neighbors)
    k = neighbors.shape[1]
    return torch.full(neighbors.shape, 1.0 / max(k, 1), dtype=torch.float32, device=neighbors.device)


def _sampled_dot(unit: torch.Tensor, sorted_neighbors: torch.Tensor) -> torch.Tensor:
    """<u_i, u_j> for every listed pair: (V, k).

    A sampled dense-dense product (SDDMM) on W's CSR pattern computes only the V*k listed dot
    products, in one kernel; gathering each neighbour's embedding and batching tiny dot products
    moves V*k*C values through memory for the same result, several times slower on CPU.
    """
    total, k = sorted_neighbors.shape
    pattern = torch_csr(sorted_neighbors, torch.zeros(sorted_neighbors.shape, device=unit.device))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sampled = torch.sparse.sampled_addmm(pattern, unit, unit.T.contiguous(), beta=0.0)
        return sampled.values().reshape(total, k)
    except (RuntimeError, NotImplementedError):  # no SDDMM kernel on this device: chunked gather
        step = _GATHER_ROWS
        return torch.cat(
            [
                (unit[sorted_neighbors[s : s + step]] * unit[s : s + step, None, :]).sum(dim=2)
                for s in range(0, total, step)
            ]
        )
