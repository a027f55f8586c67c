"""GGP's parameters: what each one means, their checks, and how a setting is written down."""

from __future__ import annotations

from dataclasses import dataclass, replace

WEIGHT_KINDS = ("affinity", "distance", "uniform")


@dataclass(frozen=True)
class GGPConfig:
    """One GGP setting.

    k:            neighbours per voxel (per cell with ``coarsen`` > 1).
    tau:          temperature of the affinity softmax; smaller gates more sharply. A quality knob,
                  not a speed one.
    iterations:   T, the number of products of W with the values.
    weights:      "affinity" (GeoPurify: softmax over the neighbours of cos(z_i, z_j) / tau of the
                  affinity embeddings), "distance" (softmax of -d^2 / sigma^2, sigma the median
                  distance to the k-th neighbour) or "uniform" (1/k). The last two are the
                  plain-geometry baselines.
    coarsen:      > 1 pools on cells of coarsen^3 voxels and hands the result back to the voxels
                  (:mod:`.cell_graph`): the same T passes reach about ``coarsen`` times further.
    centering:    share of the cloud's mean semantic feature removed before pooling and scoring
                  (query.py's "Centering"); calibrated with the pooling, because the best pooling
                  depends on the field it pools.
    include_self: whether a voxel is one of its own k neighbours. The library keeps it: a voxel's
                  own evidence then always counts, and W's positive diagonal lets repeated
                  products settle instead of swapping values between neighbours. GeoPurify's
                  released code leaves it out (:meth:`paper`). Coarse-to-fine pooling needs it
                  (each voxel draws first from its own cell).

    The defaults are set for a robot's CPU: the kNN search dominates GGP there and grows with k,
    so k is 16 rather than GeoPurify's 96, and T is higher because a smaller k reaches less far
    per pass. A trained checkpoint records the setting calibrated for its affinities on held-out
    rooms (``ov3d-train calibrate``); the Segmenter uses that one. docs/benchmarks.md and
    docs/accuracy.md give the cost and the quality of each.
    """

    k: int = 16
    tau: float = 0.05
    iterations: int = 24
    weights: str = "affinity"
    coarsen: int = 1
    centering: float = 0.0
    include_self: bool = True

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
        if not isinstance(self.include_self, bool):
            raise TypeError(f"GGP include_self must be a bool, got {self.include_self!r}")
        if not self.include_self and self.coarsen > 1:
            raise ValueError("coarse-to-fine GGP (coarsen > 1) keeps each cell among its own neighbours (include_self)")

    def record(self) -> dict:
        """``{"k", "tau", "iterations", "coarsen", "centering"}``: how model.json, ``ov3d-eval --json``
        and the benchmarks write a GGP setting (the weights kind is implied by where it is written).
        ``"include_self": False`` is added only for a setting that leaves the voxel out, so that
        every record written before the field existed still reads as what it was."""
        record = {
            "k": self.k,
            "tau": self.tau,
            "iterations": self.iterations,
            "coarsen": self.coarsen,
            "centering": self.centering,
        }
        if not self.include_self:
            record["include_self"] = False
        return record

    @classmethod
    def from_record(cls, record: dict) -> GGPConfig:
        """The inverse of :meth:`record`; KeyError / TypeError / ValueError on a malformed one.
        Older records have no "coarsen" (plain GGP), "centering" (none) or "include_self" (kept)."""
        return cls(
            k=int(record["k"]),
            tau=float(record["tau"]),
            iterations=int(record["iterations"]),
            coarsen=int(record.get("coarsen", 1)),
            centering=float(record.get("centering", 0.0)),
            include_self=record.get("include_self", True),
        )

    @classmethod
    def paper(cls, **overrides) -> GGPConfig:
        """GeoPurify's setting as its released code runs it (``evaluate_scene`` in
        ``models/affinity_module.py``): k = 96 neighbours with the voxel itself left out, weights
        softmax(20 cos) = softmax(cos / 0.05), and 19 products of W with the features (one before
        its loop of 18).

        Where it still differs, by construction: GeoPurify searches the neighbours on its integer
        voxel coordinates, this package on each voxel's mean point (so a k-th neighbour can differ
        where points sit off their voxel's middle); and GeoPurify pools its features themselves,
        where the Segmenter pools the query logits or a low-rank basis of the features (exact,
        see the package doc)."""
        return replace(cls(k=96, tau=0.05, iterations=19, include_self=False), **overrides)
