"""Coarse-to-fine GGP: pool on cells of f x f x f voxels, then hand the result back to each voxel.

Why: one GGP pass reaches one neighbourhood (k = 16 at 5 cm: about two voxels), so T passes spread
a value over roughly sqrt(T) neighbourhoods -- T = 48 reaches a few decimetres, while the furniture
a robot asks for spans 1-2 m. The student's semantics averaged over whole objects score far above
what plain pooling reaches (docs/accuracy.md, bounds). Pooling on cells f voxels wide reaches
about f times further per pass, on a fraction of the nodes (surfaces: ~f^2 fewer), so it is
also cheaper.

    pooled = P  W_c^T  R  values          (T >= 1; T = 0 is no pooling, as for the plain graph)

* R (restrict): each cell's mean of its voxels' values.
* W_c: the GGP matrix of the cells (:func:`~.voxel_graph.build_voxel_graph` on the
  cell centroids; a cell's affinity embedding is the renormalised mean of its voxels' unit
  embeddings).
* P (prolong): each voxel takes a weighted mean of the pooled values of the m cells nearest its
  own cell (that cell's first m neighbours in the cell graph: no second search), weighted the way
  GGP weighs -- a softmax of cos(voxel embedding, cell embedding) / tau for affinity weights,
  of -d^2 / sigma^2 for distance weights, 1/m for uniform. A voxel on a chair's edge so takes the
  chair's cells, not the wall's, whatever cell it falls in.

R, W_c and P are row-stochastic and linear: constant fields stay constant and the logit path
(pool Q logits instead of D features) stays exact, as the package doc derives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..neighbors import KNN, knn_voxels, tensor_knn
from .config import GGPConfig
from .sparse import check_values, scipy_csr, torch_csr
from .voxel_graph import PoolingGraph, build_voxel_graph
from .weights import distance_weights, uniform_weights

PROLONG_CELLS = 8  # m: cells each voxel draws from (its own cell's nearest, itself first)
_CHUNK = 16384  # voxels per chunk when weighing prolongation candidates (bounds V x m x C memory)


@dataclass
class CoarseGeometry:
    """The cells of one scan: geometry only, so it can be built while the network runs.

    cell_of:  (V,) int64, each voxel's cell.
    counts:   (Vc,) float32, voxels per cell.
    centers:  (Vc, 3) float32, cell centroids (mean of their voxels' centres).
    knn:      the cells' k nearest cells (itself first), as :func:`knn_voxels` returns them.
    """

    cell_of: torch.Tensor
    counts: torch.Tensor
    centers: torch.Tensor
    knn: KNN

    @property
    def num_cells(self) -> int:
        return len(self.centers)

    def to(self, device: torch.device | str) -> CoarseGeometry:
        indices, distances = tensor_knn(self.knn)
        return CoarseGeometry(
            self.cell_of.to(device),
            self.counts.to(device),
            self.centers.to(device),
            KNN(indices.to(device), distances.to(device)),
        )


def coarse_geometry(positions: np.ndarray | torch.Tensor, k: int, factor: int, voxel_size: float) -> CoarseGeometry:
    """Group voxel centres into cubic cells of ``factor * voxel_size`` and find each cell's k
    nearest cells. Runs on the positions' device (numpy: CPU)."""
    if factor < 1:
        raise ValueError(f"coarse-to-fine GGP needs a cell factor >= 1, got {factor}")
    if not voxel_size > 0:
        raise ValueError(f"coarse-to-fine GGP needs the voxel size, got {voxel_size}")
    pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions).float()
    cells = torch.floor(pos / (voxel_size * factor)).long()
    if len(cells):
        cells = cells - cells.min(dim=0).values
        extent = cells.max(dim=0).values + 1
        keys = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]
    else:
        keys = torch.zeros(0, dtype=torch.int64, device=pos.device)
    _, cell_of, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    counts = counts.float()
    centers = torch.zeros((len(counts), 3), dtype=torch.float32, device=pos.device).index_add_(0, cell_of, pos)
    centers = centers / counts.clamp(min=1.0)[:, None]
    knn = knn_voxels(centers, k, include_self=True, cell_size=voxel_size * factor)
    indices = torch.as_tensor(knn.indices, device=pos.device).long()
    distances = torch.as_tensor(knn.distances, device=pos.device).float()
    return CoarseGeometry(cell_of, counts, centers, KNN(indices, distances))


@dataclass
class CoarseToFineGraph:
    """P W_c^T R of one scan (module doc); the same ``pool`` / ``pool_stages`` as PoolingGraph."""

    cell_of: torch.Tensor  # (V,)
    counts: torch.Tensor  # (Vc,)
    coarse: PoolingGraph  # the cells' GGP graph
    prolong_cells: torch.Tensor  # (V, m) int64, each row sorted
    prolong_weights: torch.Tensor  # (V, m) float32, rows sum to 1
    _prolong: Any = field(default=None, repr=False, compare=False)  # cached sparse P (scipy or torch CSR)

    @property
    def num_voxels(self) -> int:
        return len(self.cell_of)

    @property
    def num_cells(self) -> int:
        return len(self.counts)

    def to(self, device: torch.device | str) -> CoarseToFineGraph:
        return CoarseToFineGraph(
            self.cell_of.to(device),
            self.counts.to(device),
            self.coarse.to(device),
            self.prolong_cells.to(device),
            self.prolong_weights.to(device),
        )

    def restrict(self, values: torch.Tensor) -> torch.Tensor:
        """(V, C) -> (Vc, C): each cell's mean of its voxels' values."""
        total = torch.zeros((self.num_cells, values.shape[1]), dtype=torch.float32, device=values.device)
        return total.index_add_(0, self.cell_of, values.float()) / self.counts.clamp(min=1.0)[:, None]

    def prolong(self, cell_values: torch.Tensor) -> torch.Tensor:
        """(Vc, C) -> (V, C): each voxel's weighted mean over its candidate cells."""
        on_cpu = cell_values.device.type == "cpu"  # scipy's product on CPU, as for the plain graph
        if self._prolong is None:
            build = scipy_csr if on_cpu else torch_csr
            self._prolong = build(self.prolong_cells, self.prolong_weights, self.num_cells)
        if on_cpu:
            return torch.from_numpy(np.ascontiguousarray(self._prolong @ cell_values.numpy(), dtype=np.float32))
        return self._prolong @ cell_values

    def pool(self, values: torch.Tensor, iterations: int, *, method: str = "auto") -> torch.Tensor:
        """T passes on the cells, brought back to the voxels; T = 0 returns the values unpooled."""
        values = check_values(values, self.num_voxels, self.cell_of.device)
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if iterations == 0:
            return values.clone()
        return self.prolong(self.coarse.pool(self.restrict(values), iterations, method=method))

    def pool_stages(self, values: torch.Tensor, iterations: Iterable[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(T, values pooled T times) for each T in increasing order; the cells' state carries
        over between stages, so a sweep costs max(T) cell passes."""
        values = check_values(values, self.num_voxels, self.cell_of.device)
        state, done = None, 0
        for t in sorted(set(int(t) for t in iterations)):
            if t < 0:
                raise ValueError(f"pool_stages: iterations must be >= 0, got {t}")
            if t == 0:
                yield 0, values.clone()
                continue
            state = self.restrict(values) if state is None else state
            state, done = self.coarse.pool(state, t - done), t
            yield t, self.prolong(state)


def build_coarse_to_fine_graph(
    positions: np.ndarray | torch.Tensor,
    embeddings: np.ndarray | torch.Tensor | None,
    config: GGPConfig,
    *,
    voxel_size: float | None,
    geometry: CoarseGeometry | None = None,
    device: torch.device | str | None = None,
) -> CoarseToFineGraph:
    """The coarse-to-fine graph for ``config.coarsen`` > 1 (:func:`~.pooler.build_pooling_graph` dispatches here)."""
    if voxel_size is None:
        raise ValueError("coarse-to-fine GGP needs the voxel size (cell_size)")
    pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions).float()
    pos = pos.to(device) if device is not None else pos
    if geometry is None:
        geometry = coarse_geometry(pos, config.k, config.coarsen, voxel_size)
    geometry = geometry.to(pos.device)  # built on the kNN worker (CPU) or here
    unit = cell_unit = None
    if config.weights == "affinity":
        if embeddings is None:
            raise ValueError("GGP with affinity weights needs embeddings")
        unit = torch.nn.functional.normalize(torch.as_tensor(embeddings, device=pos.device).float(), dim=1)
        cell_unit = torch.zeros((geometry.num_cells, unit.shape[1]), device=pos.device).index_add_(
            0, geometry.cell_of, unit
        )
        cell_unit = torch.nn.functional.normalize(cell_unit, dim=1)
    coarse = build_voxel_graph(
        geometry.centers,
        cell_unit,
        replace(config, coarsen=1),
        knn=geometry.knn,
        cell_size=voxel_size * config.coarsen,
        device=pos.device,
    )
    cell_neighbors, _ = tensor_knn(geometry.knn)
    m = min(PROLONG_CELLS, cell_neighbors.shape[1])
    candidates = cell_neighbors[geometry.cell_of, :m]  # (V, m), own cell first
    if config.weights == "affinity":
        assert unit is not None and cell_unit is not None  # made above for affinity weights
        weights = _affinity_to_cells(unit, cell_unit, candidates, config.tau)
    elif config.weights == "distance":
        weights = distance_weights((pos[:, None, :] - geometry.centers[candidates]).norm(dim=2))
    else:
        weights = uniform_weights(candidates)
    candidates, order = torch.sort(candidates, dim=1)
    weights = torch.gather(weights.float(), 1, order)
    return CoarseToFineGraph(geometry.cell_of, geometry.counts, coarse, candidates, weights)


def _affinity_to_cells(
    unit: torch.Tensor, cell_unit: torch.Tensor, candidates: torch.Tensor, tau: float
) -> torch.Tensor:
    """(V, m) softmax over each voxel's candidate cells of cos(voxel, cell) / tau, in chunks of
    voxels so that the (chunk, m, C) gathered cell embeddings stay small."""
    weights = torch.empty(candidates.shape, dtype=torch.float32, device=unit.device)
    for start in range(0, len(candidates), _CHUNK):
        rows = slice(start, start + _CHUNK)
        cosine = (unit[rows, None, :] * cell_unit[candidates[rows]]).sum(dim=-1)
        weights[rows] = torch.softmax(cosine / tau, dim=1)
    return weights
