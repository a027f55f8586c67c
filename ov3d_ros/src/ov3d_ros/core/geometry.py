"""Geometry of a voxel cloud from the data alone: surface normals, and a hand-made affinity embedding.

The embedding stands in for the learned affinity head where there is none: in tests, in the
"plain geometric" pooling baseline of the reports, and in the benchmarks' inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from .neighbors import KNN, knn_voxels


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
