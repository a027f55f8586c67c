"""Unsupervised over-segmentation of a point cloud: entities for scans without instance labels.

The recipe is ScanNet's ``segmentator`` (Felzenszwalb-Huttenlocher graph segmentation on mesh
normals, threshold 0.01, segments of >= 20 vertices) carried over to bare point clouds:

* graph: each point linked to its ``k_graph`` nearest neighbours (no mesh), edges longer than
  ``max_edge_length`` dropped so separate surfaces stay separate;
* normals: from the scan when it has them, else PCA over the ``k_normals`` nearest neighbours
  (batched 3x3 eigen-decompositions); PCA normals have no consistent sign, so the normal term is
  ``1 - |n_a . n_b|``;
* edge weight: ``normal_weight * (1 - |n_a . n_b|) + color_weight * |c_a - c_b| / sqrt(3)``;
* merging: Felzenszwalb's predicate -- join components A and B across an edge of weight w when
  ``w <= min(Int(A) + t / |A|, Int(B) + t / |B|)``, Int = the largest edge inside a component.

Why a Boruvka schedule instead of the sequential loop over sorted edges: that union-find visits
edges one at a time, a Python loop over every edge of every scan, and there is no compiled path
for it here (no numba; scipy has no Felzenszwalb). The parallel formulation (Wassenberg
et al., "An Efficient Parallel Algorithm for Graph-Based Image Segmentation", 2009) runs rounds in
which every component proposes its lightest outgoing edge, proposals that pass the predicate are
merged at once (``scipy.sparse.csgraph.connected_components``), and Int is updated with
``np.maximum.at``. Each round is a handful of vectorised passes over the edge list and the number
of rounds is small (components at least halve while merges succeed). The result differs from the
sequential order only in tie-breaking between merges of similar weight; the predicate is the same.
Small segments (< ``min_size`` points) are then absorbed into their lightest neighbour, again in
Boruvka rounds, as the segmentator's final pass does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ov3d_ros.core.geometry import estimate_normals as pca_normals
from ov3d_ros.core.neighbors import KNN


@dataclass
class OversegConfig:
    k_normals: int = 16
    k_graph: int = 10
    max_edge_length: float = 0.08  # metres
    normal_weight: float = 1.0
    color_weight: float = 0.5
    threshold: float = 0.02  # Felzenszwalb's t: larger -> larger segments
    min_size: int = 30  # points
    max_rounds: int = 200

    def __post_init__(self) -> None:
        if self.k_normals < 3 or self.k_graph < 1:
            raise ValueError(f"need k_normals >= 3 and k_graph >= 1, got {self.k_normals}, {self.k_graph}")
        if self.threshold <= 0 or self.max_edge_length <= 0:
            raise ValueError("overseg threshold and max_edge_length must be > 0")


def estimate_normals(points: np.ndarray, k: int = 16, tree: cKDTree | None = None) -> np.ndarray:
    """(N, 3) unit normals: the least-variance direction of each point's k nearest neighbours."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n < 3:
        return np.tile(np.array([0.0, 0.0, 1.0], np.float32), (n, 1))
    k = min(k, n)
    tree = tree or cKDTree(points)  # a caller's tree is reused for the segmentation graph too
    distances, neighbors = tree.query(points, k=k, workers=-1)
    # the PCA itself is the inference core's, so training and inference normals agree
    return pca_normals(points, k, knn=KNN(neighbors, distances)).numpy()


def knn_graph(
    points: np.ndarray, k: int, max_edge_length: float, tree: cKDTree | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Undirected kNN edges (a < b), each listed once, no longer than ``max_edge_length``."""
    n = len(points)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = min(k + 1, n)
    tree = tree or cKDTree(points)
    dist, neighbors = tree.query(points, k=k, workers=-1)
    src = np.repeat(np.arange(n), k)
    dst = neighbors.reshape(-1)
    keep = (src != dst) & (dist.reshape(-1) <= max_edge_length)
    a, b = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
    pairs = np.unique(a * n + b)
    return pairs // n, pairs % n


def oversegment(
    points: np.ndarray,
    colors: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    config: OversegConfig | None = None,
) -> np.ndarray:
    """(N,) int64 segment id per point, ids 0..S-1 in order of first appearance.

    colors: (N, 3) uint8 or float in [0, 1] (None: geometry only).
    normals: (N, 3) (None: estimated by PCA).
    """
    config = config or OversegConfig()
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n == 0:
        return np.zeros(0, np.int64)
    tree = cKDTree(points)
    if normals is None:
        normals = estimate_normals(points, config.k_normals, tree)
    normals = np.asarray(normals, dtype=np.float64)
    a, b = knn_graph(points, config.k_graph, config.max_edge_length, tree)
    weight = config.normal_weight * (1.0 - np.abs(np.einsum("ij,ij->i", normals[a], normals[b])))
    if colors is not None and config.color_weight > 0:
        rgb = np.asarray(colors, dtype=np.float64)
        rgb = rgb / 255.0 if np.asarray(colors).dtype == np.uint8 else rgb
        weight = weight + config.color_weight * np.linalg.norm(rgb[a] - rgb[b], axis=1) / np.sqrt(3.0)
    labels = felzenszwalb_graph(n, a, b, weight, config.threshold, config.min_size, config.max_rounds)
    # ids in order of first appearance: stable whatever the merge schedule numbered them
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def felzenszwalb_graph(
    num_nodes: int,
    a: np.ndarray,
    b: np.ndarray,
    weight: np.ndarray,
    threshold: float,
    min_size: int = 1,
    max_rounds: int = 200,
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a weighted undirected graph (Boruvka schedule,
    module doc). Returns (num_nodes,) component labels (arbitrary numbering)."""
    order = np.lexsort((np.arange(len(weight)), weight))  # by weight, ties by edge index
    a, b, weight = np.asarray(a)[order], np.asarray(b)[order], np.asarray(weight, np.float64)[order]
    comp = np.arange(num_nodes)
    size = np.ones(num_nodes, np.int64)
    internal = np.zeros(num_nodes, np.float64)

    def merge_round(absorb_small: bool) -> bool:
        nonlocal comp, size, internal, a, b, weight
        ca, cb = comp[a], comp[b]
        cross = ca != cb
        a, b, weight, ca, cb = a[cross], b[cross], weight[cross], ca[cross], cb[cross]
        if not len(a):
            return False
        best = _lightest_edge_per_component(ca, cb, len(size))  # edges are sorted: first = lightest
        proposing = (best >= 0) & (size < min_size) if absorb_small else best >= 0
        chosen = np.unique(best[proposing])
        pa, pb, pw = ca[chosen], cb[chosen], weight[chosen]
        if not absorb_small:  # Felzenszwalb's predicate
            keep = pw <= np.minimum(internal[pa] + threshold / size[pa], internal[pb] + threshold / size[pb])
            pa, pb, pw = pa[keep], pb[keep], pw[keep]
        if not len(pa):
            return False
        count = len(size)
        _, relabel = connected_components(
            coo_matrix((np.ones(len(pa)), (pa, pb)), shape=(count, count)), directed=False
        )
        new_internal = np.zeros(relabel.max() + 1, np.float64)
        np.maximum.at(new_internal, relabel, internal)
        if not absorb_small:  # merged edges become internal (absorbing keeps Int, as the segmentator does)
            np.maximum.at(new_internal, relabel[pa], pw)
        size = np.bincount(relabel, weights=size).astype(np.int64)
        internal = new_internal
        comp = relabel[comp]
        return True

    for _ in range(max_rounds):
        if not merge_round(absorb_small=False):
            break
    if min_size > 1:
        for _ in range(max_rounds):
            if not (size < min_size).any() or not merge_round(absorb_small=True):
                break
    return comp


def _lightest_edge_per_component(ca: np.ndarray, cb: np.ndarray, num_components: int) -> np.ndarray:
    """(C,) index of the first (= lightest, edges being sorted) edge touching each component; -1 if none."""
    edge = np.arange(len(ca))
    ends = np.concatenate([ca, cb])
    edges = np.concatenate([edge, edge])
    best = np.full(num_components, len(ca), np.int64)
    np.minimum.at(best, ends, edges)
    best[best == len(ca)] = -1
    return best
