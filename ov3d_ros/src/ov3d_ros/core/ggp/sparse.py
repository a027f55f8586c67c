"""The sparse algebra under GGP: W as a CSR matrix and T products of it with a value matrix.

A graph is given as ``neighbors`` (V, k) int64 and ``weights`` (V, k) float32: row i of W holds
``weights[i]`` at the columns ``neighbors[i]``. Three ways to apply it, the same result:

* "scipy": scipy's CSR product, single-threaded. The CPU default: a robot's CPU is never idle,
  and torch's multi-threaded kernels slow down far more than one thread does when other
  processes share the cores (docs/benchmarks.md, "Why scipy on CPU").
* "csr": torch's CSR product (cuSPARSE on CUDA, the default there).
* "gather": gather the neighbours' values and sum them weighted, in chunks of rows; for a device
  without sparse kernels.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

METHODS = ("auto", "scipy", "csr", "gather")


def check_values(values, total: int, device: torch.device) -> torch.Tensor:
    """``values`` as a (total, C) float32 tensor on ``device``; ValueError on any other shape."""
    values = torch.as_tensor(values, device=device)
    if values.ndim == 1:
        raise ValueError("values must be (V, C); use values[:, None] for one channel")
    if values.ndim != 2 or len(values) != total:
        raise ValueError(f"values must be ({total}, C), got shape {tuple(values.shape)}")
    return values.float()


def rows_sorted(neighbors: torch.Tensor) -> bool:
    """Whether every row lists its columns in increasing order (the CSR layout)."""
    return bool((neighbors[:, 1:] >= neighbors[:, :-1]).all()) if neighbors.shape[1] > 1 else True


def pick_method(method: str, device: torch.device) -> str:
    """Resolve "auto" for ``device``; ValueError for scipy on a GPU or an unknown name."""
    if method not in METHODS:
        raise ValueError(f"unknown pooling method {method!r}; use 'auto', 'scipy', 'csr' or 'gather'")
    if method == "auto":
        return "csr" if device.type != "cpu" else "scipy"
    if method == "scipy" and device.type != "cpu":
        raise ValueError("method 'scipy' needs CPU tensors; use 'csr' on CUDA")
    return method


def torch_csr(neighbors: torch.Tensor, weights: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """(V, width) torch CSR with row i holding ``weights[i]`` at columns ``neighbors[i]`` (width: V)."""
    total, k = neighbors.shape
    if rows_sorted(neighbors):
        columns, values = neighbors.reshape(-1), weights.reshape(-1).float()
    else:
        order = torch.argsort(neighbors, dim=1)
        columns = torch.gather(neighbors, 1, order).reshape(-1)
        values = torch.gather(weights, 1, order).reshape(-1).float()
    rows = torch.arange(0, total * k + 1, k, device=neighbors.device, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(rows, columns, values, size=(total, total if width is None else width))


def scipy_csr(neighbors: torch.Tensor, weights: torch.Tensor, width: int | None = None):
    """The same matrix as :func:`torch_csr`, as a scipy ``csr_matrix`` (float32)."""
    from scipy.sparse import csr_matrix

    total, k = neighbors.shape
    values = weights.detach().cpu().numpy().reshape(-1).astype(np.float32)
    columns = neighbors.cpu().numpy().reshape(-1)
    return csr_matrix(
        (values, columns, np.arange(0, total * k + 1, k)), shape=(total, total if width is None else width)
    )


def iterate_scipy(matrix, values: torch.Tensor, iterations: int) -> torch.Tensor:
    """``matrix`` (scipy) applied ``iterations`` times to CPU ``values``; a copy when zero times."""
    current = values.detach().numpy()
    for _ in range(iterations):
        current = matrix @ current
    return torch.from_numpy(np.ascontiguousarray(current, dtype=np.float32)) if iterations else values.clone()


def iterate_torch(matrix: torch.Tensor, values: torch.Tensor, iterations: int) -> torch.Tensor:
    """``matrix`` (torch sparse) applied ``iterations`` times; a copy when zero times."""
    current = values
    for _ in range(iterations):
        current = matrix @ current
    return current if iterations else values.clone()


def iterate_gather(
    neighbors: torch.Tensor, weights: torch.Tensor, values: torch.Tensor, iterations: int, chunk_size: int = 16384
) -> torch.Tensor:
    """W applied ``iterations`` times by gathers and weighted sums, ``chunk_size`` rows at a time
    (bounds the (chunk, k, C) gathered block)."""
    current = values.clone()
    scratch = torch.empty_like(current)
    for _ in range(iterations):
        for start in range(0, len(current), chunk_size):
            stop = start + chunk_size
            gathered = current[neighbors[start:stop]]  # (chunk, k, C)
            torch.sum(gathered * weights[start:stop, :, None], dim=1, out=scratch[start:stop])
        current, scratch = scratch, current
    return current
