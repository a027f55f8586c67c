"""GGP on the voxels themselves: W built from each voxel's k nearest voxels, applied T times.

The neighbours come from :func:`~ov3d_ros.core.neighbors.knn_voxels` (a k-d tree on CPU, an exact
grid-hash search on CUDA), never from all pairwise distances; the weights from :mod:`.weights`;
the products from :mod:`.sparse`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..neighbors import KNN, knn_voxels
from .config import GGPConfig
from .sparse import check_values, iterate_gather, iterate_scipy, iterate_torch, pick_method, scipy_csr, torch_csr
from .weights import affinity_weights, distance_weights, uniform_weights


@dataclass
class PoolingGraph:
    """W of one scan, built once (kNN + weights) and applied to any number of value sets.

    neighbors: (V, k) int64, each row sorted by index (the CSR layout).
    weights:   (V, k) float32, rows sum to 1, aligned with ``neighbors``.
    """

    neighbors: torch.Tensor
    weights: torch.Tensor
    _matrix: torch.Tensor | None = field(default=None, repr=False, compare=False)  # cached torch CSR
    _scipy: object | None = field(default=None, repr=False, compare=False)  # cached scipy CSR

    @property
    def num_voxels(self) -> int:
        return len(self.neighbors)

    @property
    def matrix(self) -> torch.Tensor:
        """W as a (V, V) torch sparse CSR tensor (built on first use, then cached)."""
        if self._matrix is None:
            self._matrix = torch_csr(self.neighbors, self.weights)
        return self._matrix

    def to(self, device: torch.device | str) -> PoolingGraph:
        return PoolingGraph(self.neighbors.to(device), self.weights.to(device))

    def pool(self, values: torch.Tensor, iterations: int, *, method: str = "auto") -> torch.Tensor:
        """T iterations of values <- W values; (V, C) in, (V, C) float32 out, on the graph's device.

        method: "auto" (scipy on CPU, torch CSR on CUDA), "scipy", "csr" or "gather" (:mod:`.sparse`).
        """
        values = check_values(values, self.num_voxels, self.neighbors.device)
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        method = pick_method(method, values.device)
        if method == "scipy":
            if self._scipy is None:
                self._scipy = scipy_csr(self.neighbors, self.weights)
            return iterate_scipy(self._scipy, values, iterations)
        if method == "csr":
            return iterate_torch(self.matrix, values, iterations)
        return iterate_gather(self.neighbors, self.weights, values, iterations)

    def pool_stages(self, values: torch.Tensor, iterations: Iterable[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(T, values pooled T times) for each T of ``iterations`` in increasing order, each stage
        continuing from the last (a sweep over T costs max(T) passes, not their sum)."""
        pooled, done = values, 0
        for t in sorted(set(int(t) for t in iterations)):
            if t < 0:
                raise ValueError(f"pool_stages: iterations must be >= 0, got {t}")
            pooled, done = self.pool(pooled, t - done), t
            yield t, pooled


def build_voxel_graph(
    positions: np.ndarray | torch.Tensor,
    embeddings: np.ndarray | torch.Tensor | None,
    config: GGPConfig,
    *,
    knn: KNN | None = None,
    cell_size: float | None = None,
    device: torch.device | str | None = None,
) -> PoolingGraph:
    """kNN of the voxel centres + weights of ``config.weights`` kind -> :class:`PoolingGraph`.

    positions:  (V, 3) voxel centres (metres).
    embeddings: (V, C) affinity embeddings; required for ``weights="affinity"``.
    knn:        precomputed neighbours to reuse, found with ``config.include_self``; else found here.
    cell_size:  grid cell for the CUDA kNN (pass the voxel size).
    device:     where the graph lives (default: the device of ``embeddings``/``positions``).
    """
    if config.coarsen != 1:
        raise ValueError(
            f"a voxel graph pools on voxels (coarsen 1), got coarsen {config.coarsen}; use build_pooling_graph"
        )
    if device is None:
        source = embeddings if isinstance(embeddings, torch.Tensor) else positions
        device = source.device if isinstance(source, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions).to(device)
    if knn is None:
        knn = knn_voxels(pos, config.k, include_self=config.include_self, cell_size=cell_size)
    neighbors = torch.as_tensor(knn.indices, device=device).long()
    distances = torch.as_tensor(knn.distances, device=device).float()
    neighbors, order = torch.sort(neighbors, dim=1)  # CSR layout: columns sorted within a row
    distances = torch.gather(distances, 1, order)
    if config.weights == "affinity":
        if embeddings is None:
            raise ValueError("GGP with affinity weights needs embeddings")
        weights = affinity_weights(torch.as_tensor(embeddings, device=device), neighbors, config.tau)
    elif config.weights == "distance":
        weights = distance_weights(distances)
    else:
        weights = uniform_weights(neighbors)
    return PoolingGraph(neighbors, weights)


def geometry_guided_pooling(
    values: torch.Tensor,
    neighbors: torch.Tensor,
    weights: torch.Tensor,
    iterations: int,
    *,
    method: str = "auto",
    chunk_size: int = 16384,
) -> torch.Tensor:
    """T iterations of F <- W F with W given by (neighbors, weights); (V, C) float32 out.

    The function form of :meth:`PoolingGraph.pool`, for a W built elsewhere. values may be D-dim
    features (feature path) or Q per-query logits (logit path; package doc). The result is on
    ``values.device``.
    """
    values = torch.as_tensor(values)
    device = values.device
    neighbors = torch.as_tensor(neighbors, device=device).long()
    weights = torch.as_tensor(weights, device=device).float()
    values = check_values(values, len(neighbors), device)
    if neighbors.shape != weights.shape:
        raise ValueError(f"neighbors {tuple(neighbors.shape)} and weights {tuple(weights.shape)} must match")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    method = pick_method(method, device)
    if method == "scipy":
        return iterate_scipy(scipy_csr(neighbors, weights), values, iterations)
    if method == "csr":
        return iterate_torch(torch_csr(neighbors, weights), values, iterations)
    return iterate_gather(neighbors, weights, values, iterations, chunk_size)
