"""Typed results at the seam between the inference core and its callers (node, eval, bench)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_QUERY_CHARS = 200
MAX_QUERIES = 64


class QueryError(ValueError):
    """A text query that cannot be used (empty, too long, too many, unprintable)."""


@dataclass(frozen=True)
class QuerySet:
    """What the user asked for.

    positives:  names to find; semantic id of positives[i] is i + 1 (0 = matched nothing).
    negatives:  names that compete with the positives but are never reported (LERF-style).
    threshold:  a point whose best positive score is below it is background (None = off).
    background: add canonical negatives ("object", "things", "stuff", "texture").
    vocabulary: let the shipped vocabulary of common indoor things compete too (core/query.py,
                "The one-query decision"); None = with the background (on when ``background``
                is), so closed-set callers (background off) keep a closed set.
    min_object_points: smallest object reported, in points (None = the segmenter's default);
                part of the query so that whoever asks sets it, not whoever holds the segmenter.
    """

    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    threshold: float | None = None
    background: bool = True
    vocabulary: bool | None = None
    min_object_points: int | None = None

    @property
    def uses_vocabulary(self) -> bool:
        """Whether the vocabulary competes (``vocabulary``, or ``background`` when it is None)."""
        return self.background if self.vocabulary is None else bool(self.vocabulary)

    @classmethod
    def parse(cls, text: str, negatives: str | Sequence[str] = (), **kwargs) -> QuerySet:
        """'red mug; trash can' -> QuerySet(('red mug', 'trash can')). Raises QueryError."""
        positives = tuple(_split(text))
        negs = tuple(_split(negatives)) if isinstance(negatives, str) else tuple(negatives)
        return cls(positives=positives, negatives=negs, **kwargs)

    def __post_init__(self) -> None:
        if not self.positives:
            raise QueryError("no query given: send one or more names separated by ';', e.g. 'chair; red mug'")
        if len(self.positives) + len(self.negatives) > MAX_QUERIES:
            raise QueryError(f"too many queries ({len(self.positives) + len(self.negatives)}); at most {MAX_QUERIES}")
        for q in (*self.positives, *self.negatives):
            if not isinstance(q, str) or not q.strip():
                raise QueryError(f"empty query in {self.positives!r}")
            if len(q) > MAX_QUERY_CHARS:
                raise QueryError(f"query of {len(q)} characters; at most {MAX_QUERY_CHARS}: {q[:40]!r}...")
            if not q.isprintable():
                raise QueryError(f"query contains control characters: {q!r}")
            if not any(ch.isalnum() for ch in q):  # Unicode-aware: "Stuhl", "café", "椅子" pass
                raise QueryError(f"query has no letters or digits: {q!r}")
        if len(set(self.positives)) != len(self.positives):
            raise QueryError(f"duplicate query names in {self.positives!r}")
        if self.min_object_points is not None and int(self.min_object_points) < 1:
            raise QueryError(f"min_object_points must be >= 1 (or None: the segmenter's), got {self.min_object_points}")


def _split(text) -> list[str]:
    if not isinstance(text, str):
        raise QueryError(f"queries must be text, got {type(text).__name__}")
    return [" ".join(part.split()) for part in text.split(";") if part.strip()]


@dataclass
class DetectedObject:
    """One instance of one query: a connected component of voxels labelled with it."""

    query: str
    semantic_id: int  # 1 + index of the query in QuerySet.positives
    instance_id: int  # unique within one result, >= 1
    center: np.ndarray  # (3,) box centre, metres
    size: np.ndarray  # (3,) box extent along its axes, metres
    orientation: np.ndarray  # (4,) quaternion x, y, z, w (identity for axis-aligned boxes)
    centroid: np.ndarray  # (3,) mean of the object's points
    num_points: int
    score: float  # mean per-point score


@dataclass
class SegmentationResult:
    """Per-point answer to one QuerySet on one processed cloud (same order as the input points)."""

    queries: QuerySet
    semantic: np.ndarray  # (N,) int32, 1 + query index, 0 = background
    instance: np.ndarray  # (N,) int32, object instance id, 0 = none
    score: np.ndarray  # (N,) float32 score of the winning query
    objects: list[DetectedObject] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
