"""The shipped vocabulary that competes with a user's query (``core/query.py``, "The one-query decision").

* :func:`read_vocabulary`: names from a text file (one a line, ``#`` comments), checked and
  de-duplicated; the package ships ``ov3d_ros/data/vocabulary/indoor.txt`` (~300 indoor things).
* :func:`load_vocabulary`: the names and their unit text embeddings, memoised per text encoder
  object for the life of the process (encoding all ~300 names is far dearer than encoding a
  query's few, so a robot pays it once, at its first query with the vocabulary).
* :func:`split_vocabulary`: per query, which names are left out (same meaning as a positive), which
  count as a positive (aliases) and which compete, by text cosine (:class:`~.query.QueryRule`).
* :class:`VocabularySummary`: per cloud, the vocabulary's logits summarised once (top-K names per
  voxel and the log-sum-exp over all names), from which the competition of any query follows
  without computing the ~300 columns again (module doc of ``core/query.py``, "Cost").
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .types import QueryError, QuerySet

DEFAULT_VOCABULARY = Path(__file__).resolve().parents[1] / "data" / "vocabulary" / "indoor.txt"
TOP_K = 8  # names kept per voxel; a query removing all of them falls back to exact columns there
CHUNK_ROWS = 16_384  # voxels per block while summarising (bounds memory at CHUNK_ROWS x names)


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used (missing, empty, a name that is not a valid query)."""


@dataclass(frozen=True)
class Vocabulary:
    names: tuple[str, ...]
    embeddings: torch.Tensor  # (M, D) float32 unit rows, in the text encoder's space
    source: str  # the file it was read from
    sha256: str  # of the names as used (recorded by calibrations)

    def __len__(self) -> int:
        return len(self.names)


def read_vocabulary(path: str | Path = DEFAULT_VOCABULARY) -> tuple[str, ...]:
    """Names from a vocabulary file: one a line, blank lines and ``#`` comments skipped, whitespace
    normalised, case-insensitive duplicates dropped. Raises VocabularyError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"cannot read vocabulary file {path}: {exc}") from exc
    names: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        name = " ".join(line.split("#", 1)[0].split())
        if not name:
            continue
        try:
            QuerySet((name,))  # the same rules as a query: printable, has letters, not too long
        except QueryError as exc:
            raise VocabularyError(f"{path}:{number}: {exc}") from exc
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    if not names:
        raise VocabularyError(f"vocabulary file {path} holds no names")
    return tuple(names)


_MEMO: weakref.WeakKeyDictionary[object, dict] = weakref.WeakKeyDictionary()
_MEMO_LOCK = threading.Lock()


def load_vocabulary(encoder, path: str | Path | None = None, device: str | torch.device = "cpu") -> Vocabulary:
    """The vocabulary of ``path`` (None: the shipped one) embedded by ``encoder``, memoised per
    encoder object (the embeddings depend on its weights and templates, so never across encoders).
    A :class:`~.text.CachedTextEncoder` is looked through: the ~300 names stay out of its LRU."""
    path = Path(path) if path is not None else DEFAULT_VOCABULARY
    names = read_vocabulary(path)
    digest = hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()
    inner = getattr(encoder, "encoder", encoder)
    key = (digest, tuple(getattr(encoder, "templates", ())))
    with _MEMO_LOCK:
        rows = _MEMO.get(inner, {}).get(key)
    if rows is None:
        rows = np.ascontiguousarray(inner.encode(list(names)), dtype=np.float32)
        rows.setflags(write=False)
        with _MEMO_LOCK:
            _MEMO.setdefault(inner, {})[key] = rows
    embeddings = torch.from_numpy(rows.copy()).to(device)
    return Vocabulary(names, embeddings, str(path), digest)


@dataclass(frozen=True)
class VocabularySplit:
    """What one query does with each vocabulary name."""

    alias_index: torch.Tensor  # (A,) long: names that count as a positive
    alias_owner: torch.Tensor  # (A,) long: the positive each alias answers for
    removed: torch.Tensor  # (M,) bool: names that do not compete (left out, aliases, duplicates)
    excluded: tuple[str, ...]  # left out (same meaning as a positive, or already a candidate)
    aliases: tuple[str, ...]


def split_vocabulary(
    vocabulary: Vocabulary, positive_text: torch.Tensor, rule, taken: Iterable[str] = ()
) -> VocabularySplit:
    """Split the vocabulary for one query by text cosine to its positives (``rule``: a QueryRule).

    positive_text: (P, D) unit embeddings of the positives. ``taken``: the query's other candidate
    names (positives, the user's negatives, canonical phrases): equal names (case-insensitive)
    are left out of the vocabulary, since they already compete (or answer) as themselves.
    """
    embeddings = vocabulary.embeddings
    cosine = positive_text.to(embeddings.device, torch.float32) @ embeddings.T  # (P, M)
    best, owner = cosine.max(dim=0)
    taken_folded = {name.casefold() for name in taken}
    duplicate = torch.tensor([name.casefold() in taken_folded for name in vocabulary.names], device=embeddings.device)
    excluded = duplicate | (best >= float(rule.exclude))
    alias = ~excluded & (best >= float(rule.alias)) if rule.alias is not None else torch.zeros_like(excluded)
    alias_index = alias.nonzero().flatten()
    return VocabularySplit(
        alias_index=alias_index,
        alias_owner=owner[alias_index],
        removed=excluded | alias,
        excluded=tuple(vocabulary.names[i] for i in excluded.nonzero().flatten().tolist()),
        aliases=tuple(vocabulary.names[i] for i in alias_index.tolist()),
    )


# a block of the vocabulary's logits on one cloud: (voxel rows or None = all, name columns) -> (R, C)
LogitBlock = Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]


class VocabularySummary:
    """A vocabulary's logits on one cloud, summarised once for every query (core/query.py, "Cost").

    Keeps per voxel the TOP_K best names (logits and indices) and the log-sum-exp of logits / T
    over all names. :meth:`competition` then gives, for any set of removed names, the best
    remaining logit (exact: from the top-K, or from the exact columns on the voxels whose top-K
    were all removed) and the log-sum-exp over the remaining names (exact up to float
    cancellation: the removed names' mass is subtracted, never below the best remaining name's).
    """

    def __init__(self, block: LogitBlock, num_voxels: int, num_names: int, temperature: float, top_k: int = TOP_K):
        if num_names == 0:
            raise ValueError("an empty vocabulary has nothing to summarise")
        self.block = block
        self.num_voxels = int(num_voxels)
        self.num_names = int(num_names)
        self.temperature = float(temperature)
        k = min(int(top_k), self.num_names)
        all_names = torch.arange(self.num_names)
        values, indices, lse = [], [], []
        for start in range(0, self.num_voxels, CHUNK_ROWS):
            rows = torch.arange(start, min(start + CHUNK_ROWS, self.num_voxels))
            logits = block(rows, all_names).float()
            top = logits.topk(k, dim=1)  # sorted: column 0 is each row's max
            values.append(top.values)
            indices.append(top.indices)
            # log-sum-exp of logits / T in place (the block is ours): exp((s - max) / T) summed, kept
            # in float64 -- a query that removes most of a voxel's mass subtracts from it (competition)
            peak = top.values[:, :1]
            inv = 1.0 / self.temperature
            total = logits.sub_(peak).mul_(inv).exp_().sum(dim=1, dtype=torch.float64)
            lse.append(total.log_() + peak[:, 0].double() * inv)
        device = values[0].device if values else torch.device("cpu")
        self.top_values = torch.cat(values) if values else torch.zeros((0, k), device=device)
        self.top_indices = torch.cat(indices) if indices else torch.zeros((0, k), dtype=torch.long, device=device)
        self.logsumexp = torch.cat(lse) if lse else torch.zeros(0, dtype=torch.float64, device=device)

    def competition(self, removed: torch.Tensor, margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(best logit (V,), log-sum-exp of logits / T (V,)) over the names not ``removed`` ((M,)
        bool), every logit lowered by ``margin``; None when every name is removed."""
        removed = removed.to(self.top_indices.device)
        kept_columns = (~removed).nonzero().flatten()
        if len(kept_columns) == 0:
            return None
        kept = ~removed[self.top_indices]  # (V, K)
        best = self.top_values.masked_fill(~kept, float("-inf")).max(dim=1).values
        uncovered = (~kept.any(dim=1)).nonzero().flatten()
        if len(uncovered):  # every name in these voxels' top-K was removed: the exact columns there
            best[uncovered] = self.block(uncovered, kept_columns).float().max(dim=1).values
        lse = self.logsumexp  # float64: the subtraction below may cancel most of it
        removed_columns = removed.nonzero().flatten()
        if len(removed_columns):
            inv = 1.0 / self.temperature
            removed_mass = torch.exp(self.block(None, removed_columns).double() * inv - lse[:, None]).sum(dim=1)
            floor = torch.exp(best.double() * inv - lse)  # the best remaining name alone: a lower bound
            lse = lse + torch.log(torch.maximum(1.0 - removed_mass, floor))
        margin = float(margin)
        return best - margin, (lse - margin / self.temperature).float()


def field_block(field, vocabulary: Vocabulary) -> LogitBlock:
    """Blocks of a semantic field's vocabulary logits, computed on demand (fields with ``rows``).

    A pooled low-rank field's logits, basis @ (text W)^T + scale (text b)^T, are taken as one
    product of [basis, scale] and [text W, text b] (same values up to float rounding): summarising
    ~300 names per voxel is mostly this product, and the broadcast form costs several times more
    (``ov3d-bench``: within the ``query.vocabulary_competition`` stage of ``end_to_end_stages_s``,
    the first query on a cloud)."""
    from .query import PooledLowRank

    def block(rows: torch.Tensor | None, columns: torch.Tensor) -> torch.Tensor:
        device = vocabulary.embeddings.device
        part = field if rows is None else field.rows(rows.to(device))
        text = vocabulary.embeddings[columns.to(device)]
        if isinstance(part, PooledLowRank):
            left = torch.cat([part.basis, part.scale[:, None]], dim=1)
            right = torch.cat([text @ part.weight, (text @ part.bias)[:, None]], dim=1)
            return left @ right.T
        return part.logits(text)

    return block


def matrix_block(matrix: torch.Tensor) -> LogitBlock:
    """Blocks of a stored (V, M) logit matrix (when logits are pooled per query, the vocabulary's
    are pooled once per cloud and kept)."""

    def block(rows: torch.Tensor | None, columns: torch.Tensor) -> torch.Tensor:
        columns = columns.to(matrix.device)
        return matrix[:, columns] if rows is None else matrix[rows.to(matrix.device)][:, columns]

    return block
