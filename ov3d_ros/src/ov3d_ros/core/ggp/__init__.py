"""Geometry-guided pooling (GGP): smooth per-voxel values along the scene's geometry.

Each voxel i has k nearest occupied voxels N(i). Weights are a softmax over N(i) of the cosine
similarity of the affinity embeddings z, sharpened by a temperature tau:

    w_ij = exp(cos(z_i, z_j) / tau) / sum_{l in N(i)} exp(cos(z_i, z_l) / tau)

and T iterations of F <- W F pool the values. W is row-stochastic (V x V, k non-zeros per row).

Modules, each with one job (imports only go down this list):

* :mod:`.config`      -- GGPConfig: the parameters, their checks, their records; GeoPurify's setting.
* :mod:`.sparse`      -- W as a CSR matrix (scipy or torch) and T products of it.
* :mod:`.weights`     -- the weights of W: affinity (GeoPurify's), distance and uniform baselines.
* :mod:`.voxel_graph` -- PoolingGraph: GGP on the voxels.
* :mod:`.cell_graph`  -- CoarseToFineGraph: GGP on cells of f^3 voxels, handed back to the voxels.
* :mod:`.pooler`      -- the Pooler protocol both graphs follow, and build_pooling_graph, which
  builds the one a config asks for.

GeoPurify's own formulation -- all pairwise distances, a COO matrix, the features pooled
channel by channel -- is kept out of the library, as the benchmarks' and tests' reference
(:mod:`ov3d_ros.bench.ggp_reference`).

The logit path -- what exactly is equal
---------------------------------------
GGP is linear: with G = W applied T times, (G F) t = G (F t) for any fixed vector t. Let F be the
per-voxel features as they are pooled (raw, or L2-normalised per voxel *before* pooling -- the
same choice in both paths) and t_q the text embeddings. Then

    pooled logits   L' = G (F t^T)      (V x Q: pool Q channels instead of D)
    pooled features P  = G F            (V x D)

satisfy L' = P t^T exactly (up to float rounding). Hence

    argmax_q L'_iq = argmax_q <P_i, t_q> = argmax_q <P_i, t_q> / |P_i| = argmax_q cos(P_i, t_q)

because |P_i| > 0 is shared by all q: **labels are identical**. What differs is the *score*: the
logit path yields <P_i, t_q> = |P_i| cos(P_i, t_q), not the cosine itself (the norm |P_i| is not
linear in F, so it cannot be pooled). If the features are unit-normalised before pooling,
|P_i| <= 1 and equals 1 where the neighbours agree, so the dot product is a lower bound on the
cosine. Use the feature path when the pooled features themselves (or exact cosines) are needed.
With Q queries against D feature channels, the logit path costs about Q/D of the feature path.
The same holds for the coarse-to-fine graph, which is a product of linear row-stochastic maps.
"""

from __future__ import annotations

from .cell_graph import CoarseGeometry, CoarseToFineGraph, build_coarse_to_fine_graph, coarse_geometry
from .config import WEIGHT_KINDS, GGPConfig
from .pooler import Geometry, Pooler, build_pooling_graph, pooling_geometry
from .voxel_graph import PoolingGraph, build_voxel_graph, geometry_guided_pooling
from .weights import affinity_weights, distance_weights, uniform_weights

__all__ = [
    "WEIGHT_KINDS",
    "CoarseGeometry",
    "CoarseToFineGraph",
    "GGPConfig",
    "Geometry",
    "Pooler",
    "PoolingGraph",
    "affinity_weights",
    "build_coarse_to_fine_graph",
    "build_pooling_graph",
    "build_voxel_graph",
    "coarse_geometry",
    "distance_weights",
    "geometry_guided_pooling",
    "pooling_geometry",
    "uniform_weights",
]
