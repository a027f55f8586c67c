"""Geometry-guided pooling (GGP): smooth per-voxel values along the scene's geometry.

Each voxel i has k nearest occupied voxels N(i) (itself included). Weights are a softmax over
N(i) of the cosine similarity of the affinity embeddings z, sharpened by a temperature tau:

    w_ij = exp(cos(z_i, z_j) / tau) / sum_{l in N(i)} exp(cos(z_i, z_l) / tau)

and T iterations of F <- W F pool the values. W is row-stochastic (V x V, k non-zeros per row).

Fast path (this module) vs the plain reference (:func:`reference_ggp`)
---------------------------------------------------------------------
* kNN by a k-d tree on CPU or an exact grid-hash search on CUDA (:mod:`.neighbors`), never
  O(V^2); the reference computes all pairwise distances.
* cosines only for the V*k neighbour pairs, by a sampled dense-dense product
  (``torch.sparse.sampled_addmm`` on the CSR pattern of W): 15-20x faster on CPU than gathering
  neighbour embeddings and batching tiny dot products.
* W F as one CSR sparse x dense product per iteration: scipy's on CPU, torch's (cuSPARSE) on
  CUDA. Measured on 80k voxels, k = 16, per iteration, 2 CPU cores: quiet machine -- torch CSR
  (MKL, 2 threads) 2.4 ms for 20 channels / 160 ms for 384, scipy 3-6 ms / 170 ms; with other
  processes on the cores (load 4) -- torch CSR 36 ms / 220 ms, scipy 12 ms / 130 ms. A robot's
  CPU is never idle, and OpenMP's 2-thread kernels degrade badly when oversubscribed, so the
  single-threaded scipy product is the CPU default (``method="csr"`` forces torch's). The chunked
  gather + weighted sum took 28-230 ms / 700-2400 ms (kept as ``method="gather"`` for devices
  without sparse kernels).

The logit path -- what exactly is equal
---------------------------------------
GGP is linear: with G = W applied T times, (G F) t = G (F t) for any fixed vector t. Let F be
the per-voxel features as they are pooled (raw, or L2-normalised per voxel *before* pooling --
the same choice in both paths) and t_q the text embeddings. Then

    pooled logits   L' = G (F t^T)      (V x Q: pool Q channels instead of D)
    pooled features P  = G F            (V x D)

satisfy L' = P t^T exactly (up to float rounding, ~1e-6 relative). Hence

    argmax_q L'_iq = argmax_q <P_i, t_q> = argmax_q <P_i, t_q> / |P_i| = argmax_q cos(P_i, t_q)

because |P_i| > 0 is shared by all q: **labels are identical**. What differs is the *score*: the
logit path yields <P_i, t_q> = |P_i| cos(P_i, t_q), not the cosine itself (the norm |P_i| is not
linear in F, so it cannot be pooled). If the features are unit-normalised before pooling,
|P_i| <= 1 and equals 1 where the neighbours agree, so the dot product is a lower bound on the
cosine. Use the feature path when the pooled features themselves (or exact cosines) are needed.
At Q = 20 vs D = 384 the logit path is ~20-60x cheaper per iteration on CPU.

Parameters
----------
The paper's GeoPurify defaults are k = 96, tau = 0.05, T = 18 (``GGPConfig.paper()``). The
library defaults (``GGPConfig()``) are set for a robot's CPU budget; see ``GGPConfig``. A trained
checkpoint may record its own tau and T, calibrated for its affinities on held-out rooms
(``ov3d-train calibrate``); the Segmenter uses those unless told otherwise.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .neighbors import KNN, knn_voxels

WEIGHT_KINDS = ("affinity", "distance", "uniform")


@dataclass(frozen=True)
class GGPConfig:
    """GGP parameters.

    ==========  =====  =======  =============================================================
    parameter   paper  shipped  why
    ==========  =====  =======  =============================================================
    k           96     16       the k-d tree kNN dominates GGP on CPU and grows ~linearly in k
                                (80k voxels, 2 quiet cores: k = 16 0.12-0.15 s, k = 96 1.3 s)
    tau         0.05   0.05     how sharply affinities gate; a quality knob, not a speed one
    iterations  18     24       a smaller k reaches less far per iteration, so more of them;
                                pooling costs ~T * k: 24 x 16 is a quarter of 18 x 96
    ==========  =====  =======  =============================================================

    Quality, measured on the ScanNet scene (80k voxels) with corrupted one-hot ScanNet-20
    labels and the data-only ``geometric_embedding`` as affinities (test_pooling's scenario),
    mIoU: 0.481 before pooling; shipped 0.752 (uniform weights 0.705, distance weights 0.710);
    k = 16, T = 32: 0.769; paper 0.805 (uniform 0.620). Cost on 2 quiet CPU cores at 80k
    voxels: shipped ~0.25-0.35 s for kNN + weights + 24 iterations on 20 logits; paper ~1.7 s
    (component timings taken while the machine was quiet; with other jobs on the cores all
    of it stretches 3-8x).
    ``ov3d_ros.bench.ggp_bench`` measures both.

    weights: "affinity" (the paper: softmax of cos/tau of affinity embeddings), "distance"
    (softmax of -d^2 / sigma^2, sigma = median k-th neighbour distance) or "uniform" (1/k) --
    the last two are the plain-geometry baselines.
    """

    k: int = 16
    tau: float = 0.05
    iterations: int = 24
    weights: str = "affinity"
    coarsen: int = 1  # > 1: pool on cells of coarsen^3 voxels, then back to voxels (coarse_pooling.py)
    # share of the cloud's mean semantic feature removed before pooling and scoring (query.py's
    # "Centering"); calibrated with the pooling, since the best pooling depends on the field it pools
    centering: float = 0.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"GGP k must be >= 1, got {self.k}")
        if not self.tau > 0:
            raise ValueError(f"GGP tau must be > 0, got {self.tau}")
        if self.iterations < 0:
            raise ValueError(f"GGP iterations must be >= 0, got {self.iterations}")
        if self.weights not in WEIGHT_KINDS:
            raise ValueError(f"GGP weights must be one of {WEIGHT_KINDS}, got {self.weights!r}")
        if self.coarsen < 1:
            raise ValueError(f"GGP coarsen must be >= 1, got {self.coarsen}")
        if not 0.0 <= self.centering <= 1.0:
            raise ValueError(f"GGP centering must be in [0, 1], got {self.centering}")

    def record(self) -> dict:
        """``{"k", "tau", "iterations", "coarsen", "centering"}``: how model.json, ``ov3d-eval --json``
        and the benchmarks write a GGP setting (the weights kind is implied by where it is written)."""
        return {"k": self.k, "tau": self.tau, "iterations": self.iterations, "coarsen": self.coarsen,
                "centering": self.centering}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict) -> "GGPConfig":
        """The inverse of :meth:`record`; KeyError / TypeError / ValueError on a malformed one.
        Older records have no "coarsen" (plain GGP) or "centering" (none)."""
        return cls(k=int(record["k"]), tau=float(record["tau"]), iterations=int(record["iterations"]),
                   coarsen=int(record.get("coarsen", 1)), centering=float(record.get("centering", 0.0)))  # fmt: skip

    @classmethod
    def paper(cls, **overrides) -> "GGPConfig":
        """The GeoPurify paper's setting: k = 96, tau = 0.05, T = 18."""
        return replace(cls(k=96, tau=0.05, iterations=18), **overrides)


@dataclass
class PoolingGraph:
    """W of one scan, built once (kNN + weights) and applied to any number of value sets.

    neighbors: (V, k) int64, each row sorted by index (the CSR layout).
    weights:   (V, k) float32, rows sum to 1, aligned with ``neighbors``.
    """

    neighbors: torch.Tensor
    weights: torch.Tensor
    _matrix: torch.Tensor | None = field(default=None, repr=False, compare=False)  # cached CSR
    _scipy: object | None = field(default=None, repr=False, compare=False)  # cached scipy CSR

    @property
    def num_voxels(self) -> int:
        return len(self.neighbors)

    @property
    def matrix(self) -> torch.Tensor:
        """W as a (V, V) sparse CSR tensor (built on first use, then cached)."""
        if self._matrix is None:
            self._matrix = _csr(self.neighbors, self.weights)
        return self._matrix

    def to(self, device: torch.device | str) -> "PoolingGraph":
        return PoolingGraph(self.neighbors.to(device), self.weights.to(device))

    def pool(self, values: torch.Tensor, iterations: int, *, method: str = "auto") -> torch.Tensor:
        """T iterations of values <- W values; (V, C) in, (V, C) float32 out, on the graph's device.

        method: "auto" (scipy on CPU, torch CSR on CUDA), "scipy", "csr" or "gather".
        """
        values = _as_values(values, self.num_voxels, self.neighbors.device)
        method = _pick_method(method, values.device)
        if method == "scipy":
            if self._scipy is None:
                self._scipy = _scipy_csr(self.neighbors, self.weights)
            return _iterate_scipy(self._scipy, values, iterations)
        if method == "csr":
            return _iterate(self.matrix, values, iterations)
        return geometry_guided_pooling(values, self.neighbors, self.weights, iterations, method=method)

    def pool_stages(self, values: torch.Tensor, iterations: Iterable[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(T, values pooled T times) for each T of ``iterations`` in increasing order, each stage
        continuing from the last (a sweep over T costs max(T) passes, not their sum)."""
        pooled, done = values, 0
        for t in sorted(set(int(t) for t in iterations)):
            if t < 0:
                raise ValueError(f"pool_stages: iterations must be >= 0, got {t}")
            pooled, done = self.pool(pooled, t - done), t
            yield t, pooled


def build_pooling_graph(
    positions: np.ndarray | torch.Tensor,
    embeddings: np.ndarray | torch.Tensor | None = None,
    config: GGPConfig = GGPConfig(),
    *,
    knn: KNN | None = None,
    cell_size: float | None = None,
    device: torch.device | str | None = None,
) -> PoolingGraph:
    """kNN of the voxel centres + weights of ``config.weights`` kind -> :class:`PoolingGraph`.

    positions:  (V, 3) voxel centres (metres).
    embeddings: (V, C) affinity embeddings; required for ``weights="affinity"``.
    knn:        precomputed neighbours (include_self=True) to reuse; else computed here. With
                ``config.coarsen`` > 1 a precomputed :class:`~.coarse_pooling.CoarseGeometry`.
    cell_size:  grid cell for the CUDA kNN (pass the voxel size; coarse-to-fine GGP needs it).
    device:     where the graph lives (default: the device of ``embeddings``/``positions``).

    ``config.coarsen`` > 1 returns a :class:`~.coarse_pooling.CoarseToFineGraph` (same ``pool``).
    """
    if config.coarsen > 1:
        from .coarse_pooling import CoarseGeometry, build_coarse_to_fine_graph

        geometry = knn if isinstance(knn, CoarseGeometry) else None
        return build_coarse_to_fine_graph(positions, embeddings, config, voxel_size=cell_size, geometry=geometry, device=device)
    if device is None:
        source = embeddings if isinstance(embeddings, torch.Tensor) else positions
        device = source.device if isinstance(source, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions).to(device)
    if knn is None:
        knn = knn_voxels(pos, config.k, include_self=True, cell_size=cell_size)
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
    if _rows_sorted(neighbors):  # the graph's layout already: no sort, no scatter back
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
    return torch.softmax(-(distances / sigma) ** 2, dim=1)


def uniform_weights(neighbors: torch.Tensor) -> torch.Tensor:
    """Plain-geometry baseline: every neighbour weighs 1/k."""
    neighbors = torch.as_tensor(neighbors)
    k = neighbors.shape[1]
    return torch.full(neighbors.shape, 1.0 / max(k, 1), dtype=torch.float32, device=neighbors.device)


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

    values may be D-dim features (feature path) or Q per-query logits (logit path; module doc).
    method: "auto" (scipy's CSR product on CPU, torch's on CUDA; see the module doc), "scipy",
    "csr" (torch) or "gather" (chunked gather + weighted sum, for devices without sparse
    kernels). CPU and CUDA; the result is on ``values.device``.
    """
    values = torch.as_tensor(values)
    device = values.device
    neighbors = torch.as_tensor(neighbors, device=device).long()
    weights = torch.as_tensor(weights, device=device).float()
    values = _as_values(values, len(neighbors), device)
    if neighbors.shape != weights.shape:
        raise ValueError(f"neighbors {tuple(neighbors.shape)} and weights {tuple(weights.shape)} must match")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    method = _pick_method(method, device)
    if method == "scipy":
        return _iterate_scipy(_scipy_csr(neighbors, weights), values, iterations)
    if method == "csr":
        return _iterate(_csr(neighbors, weights), values, iterations)
    if method == "gather":
        current = values.clone()
        scratch = torch.empty_like(current)
        for _ in range(iterations):
            for start in range(0, len(current), chunk_size):
                stop = start + chunk_size
                gathered = current[neighbors[start:stop]]  # (c, k, C)
                torch.sum(gathered * weights[start:stop, :, None], dim=1, out=scratch[start:stop])
            current, scratch = scratch, current
        return current
    raise ValueError(f"unknown pooling method {method!r}; use 'auto', 'scipy', 'csr' or 'gather'")


def reference_ggp(
    features: np.ndarray | torch.Tensor,
    embeddings: np.ndarray | torch.Tensor,
    positions: np.ndarray | torch.Tensor,
    k: int,
    tau: float,
    iterations: int,
    *,
    weights: str = "affinity",
) -> np.ndarray:
    """The plain GGP, written for clarity and checking, not speed (float64 throughout).

    kNN from all pairwise distances (chunked to fit memory, O(V^2) work by design, the voxel
    itself always first), weights by explicit exp / sum, and every feature channel propagated
    with a gather and weighted sum per iteration. Returns (V, D) float64 numpy.
    """
    feats = torch.as_tensor(np.asarray(features, dtype=np.float64))
    pos = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    total = len(pos)
    k = min(int(k), total)
    neighbors, distances = [], []
    rows_per_chunk = max(1, (1 << 25) // max(total, 1))  # <= 256 MiB of float64 distances
    for start in range(0, total, rows_per_chunk):
        d = torch.cdist(pos[start : start + rows_per_chunk], pos, compute_mode="donot_use_mm_for_euclid_dist")
        rows = torch.arange(start, min(start + rows_per_chunk, total))
        d[rows - start, rows] = -1.0  # self first, even among duplicate points
        dist, index = torch.topk(d, k, dim=1, largest=False, sorted=True)
        neighbors.append(index)
        distances.append(dist.clamp(min=0.0))
    nb = torch.cat(neighbors) if neighbors else torch.zeros((0, k), dtype=torch.int64)
    if weights == "affinity":
        z = torch.as_tensor(np.asarray(embeddings, dtype=np.float64))
        z = z / z.norm(dim=1, keepdim=True).clamp(min=1e-12)
        cosine = (z[nb] * z[:, None, :]).sum(dim=2)
        e = torch.exp((cosine - cosine.max(dim=1, keepdim=True).values) / tau)
        w = e / e.sum(dim=1, keepdim=True)
    elif weights == "distance":
        dist = torch.cat(distances)
        sigma = dist[:, -1].median()
        e = torch.exp(-((dist / sigma) ** 2))
        w = e / e.sum(dim=1, keepdim=True)
    elif weights == "uniform":
        w = torch.full(nb.shape, 1.0 / k, dtype=torch.float64)
    else:
        raise ValueError(f"unknown weights {weights!r}")
    step = max(1, (1 << 24) // max(k * feats.shape[1], 1))  # <= 128 MiB gathered per chunk
    for _ in range(iterations):
        if total:
            feats = torch.cat([(w[s : s + step, :, None] * feats[nb[s : s + step]]).sum(dim=1) for s in range(0, total, step)])
    return feats.numpy()


def estimate_normals(positions: np.ndarray | torch.Tensor, k: int = 16, *, knn: KNN | None = None) -> torch.Tensor:
    """Unit surface normals by PCA of each voxel's k nearest voxels: (V, 3) float32, unoriented.

    The normal is the eigenvector of the smallest eigenvalue of the neighbourhood covariance;
    its sign is arbitrary (use sign-invariant products of it).
    """
    pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions).double()
    if len(pos) < 3:
        return torch.zeros((len(pos), 3), dtype=torch.float32, device=pos.device)
    if knn is None:
        knn = knn_voxels(pos, k, include_self=True)
    neighbors = torch.as_tensor(knn.indices, device=pos.device).long()
    local = pos[neighbors] - pos[neighbors].mean(dim=1, keepdim=True)
    covariance = local.transpose(1, 2) @ local
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    return vectors[:, :, 0].float()


def geometric_embedding(
    centers: np.ndarray | torch.Tensor,
    colors: np.ndarray | torch.Tensor | None = None,
    normals: np.ndarray | torch.Tensor | None = None,
    *,
    color_weight: float = 1.0,
    height_scale: float | None = 0.5,
) -> torch.Tensor:
    """A hand-made affinity embedding from the data alone (no learning): (V, 6 to 11) float32.

    Its cosine similarity is high for voxels on the same smooth surface with the same colour
    and at similar height, so GGP with it respects object boundaries where the geometry does:

    * 6 terms n n^T of the unit normal (xx, yy, zz, and sqrt(2) xy, xz, yz): their dot
      product is (n_i . n_j)^2, invariant to the normal's arbitrary sign;
    * colour minus the scene's mean colour, times ``color_weight``;
    * cos and sin of height / ``height_scale``: dot product cos((z_i - z_j) / height_scale),
      a similarity of heights (z is the gravity axis; ``height_scale=None`` leaves these out,
      e.g. for clouds in a camera frame).

    It stands in for the learned affinity head in tests and in the "plain geometric" baseline.
    Normals default to :func:`estimate_normals` of the centres.
    """
    pos = torch.as_tensor(np.asarray(centers) if not isinstance(centers, torch.Tensor) else centers).float()
    n = estimate_normals(pos) if normals is None else torch.as_tensor(normals, device=pos.device).float()
    n = torch.nn.functional.normalize(n, dim=1)
    root2 = 2.0**0.5
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    parts = [torch.stack([x * x, y * y, z * z, root2 * x * y, root2 * x * z, root2 * y * z], dim=1)]
    if colors is not None:
        rgb = torch.as_tensor(colors, device=pos.device).float()
        parts.append(color_weight * (rgb - rgb.mean(dim=0, keepdim=True)))
    if height_scale is not None:
        phase = pos[:, 2:3] / height_scale
        parts.append(torch.cat([torch.cos(phase), torch.sin(phase)], dim=1))
    return torch.cat(parts, dim=1)


# ----------------------------------------------------------------------------------- internals
def _as_values(values, total: int, device: torch.device) -> torch.Tensor:
    values = torch.as_tensor(values, device=device)
    if values.ndim == 1:
        raise ValueError("values must be (V, C); use values[:, None] for one channel")
    if values.ndim != 2 or len(values) != total:
        raise ValueError(f"values must be ({total}, C), got shape {tuple(values.shape)}")
    return values.float()


def _rows_sorted(neighbors: torch.Tensor) -> bool:
    return bool((neighbors[:, 1:] >= neighbors[:, :-1]).all()) if neighbors.shape[1] > 1 else True


def _csr(neighbors: torch.Tensor, weights: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """(V, width) torch CSR with row i holding ``weights[i]`` at columns ``neighbors[i]`` (width: V)."""
    total, k = neighbors.shape
    if _rows_sorted(neighbors):
        columns, values = neighbors.reshape(-1), weights.reshape(-1).float()
    else:
        order = torch.argsort(neighbors, dim=1)
        columns = torch.gather(neighbors, 1, order).reshape(-1)
        values = torch.gather(weights, 1, order).reshape(-1).float()
    rows = torch.arange(0, total * k + 1, k, device=neighbors.device, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(rows, columns, values, size=(total, total if width is None else width))


def _sampled_dot(unit: torch.Tensor, sorted_neighbors: torch.Tensor) -> torch.Tensor:
    """<u_i, u_j> for every listed pair, by SDDMM on W's CSR pattern: (V, k)."""
    total, k = sorted_neighbors.shape
    pattern = _csr(sorted_neighbors, torch.zeros(sorted_neighbors.shape, device=unit.device))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sampled = torch.sparse.sampled_addmm(pattern, unit, unit.T.contiguous(), beta=0.0)
        return sampled.values().reshape(total, k)
    except (RuntimeError, NotImplementedError):  # no SDDMM kernel on this device: chunked gather
        return torch.cat(
            [(unit[sorted_neighbors[s : s + 8192]] * unit[s : s + 8192, None, :]).sum(dim=2) for s in range(0, total, 8192)]
        )


def _pick_method(method: str, device: torch.device) -> str:
    if method == "auto":
        return "csr" if device.type != "cpu" else "scipy"
    if method == "scipy" and device.type != "cpu":
        raise ValueError("method 'scipy' needs CPU tensors; use 'csr' on CUDA")
    return method


def _scipy_csr(neighbors: torch.Tensor, weights: torch.Tensor, width: int | None = None):
    from scipy.sparse import csr_matrix

    total, k = neighbors.shape
    values = weights.detach().cpu().numpy().reshape(-1).astype(np.float32)
    columns = neighbors.cpu().numpy().reshape(-1)
    return csr_matrix((values, columns, np.arange(0, total * k + 1, k)), shape=(total, total if width is None else width))


def _iterate_scipy(matrix, values: torch.Tensor, iterations: int) -> torch.Tensor:
    current = values.detach().numpy()
    for _ in range(iterations):
        current = matrix @ current
    return torch.from_numpy(np.ascontiguousarray(current, dtype=np.float32)) if iterations else values.clone()


def _iterate(matrix: torch.Tensor, values: torch.Tensor, iterations: int) -> torch.Tensor:
    current = values
    for _ in range(iterations):
        current = matrix @ current
    return current if iterations else values.clone()
