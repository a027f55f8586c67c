"""Query scoring: per-voxel features + text -> per-voxel label and score.

Candidates
----------
For a :class:`QuerySet` the candidates are, in order: the positives (reported, semantic id =
1 + index), the user's negatives, and -- with ``background=True`` -- the canonical negatives
:data:`CANONICAL_NEGATIVES` (LERF's "object", "things", "stuff", "texture"). Negatives compete
for points but are never reported: a point won by a negative is background (0). A negative or
canonical name equal to a positive (case-insensitive) is dropped -- asking for "object" must not
be cancelled by the background "object".

Semantic fields, logits and pooling
-----------------------------------
Voxel logits are cosines: unit voxel features @ unit text embeddings^T, (V, Q). The per-voxel
unit features are held as a *field* that knows how to take logits cheaply:

* :class:`DenseSemantic`: (V, D) unit rows (a cloud's own lifted features);
* :class:`LowRankSemantic`: the student's output kept factored through its last Linear layer,
  so (V, D) is never built;
* :class:`PooledLowRank`: a LowRankSemantic after GGP, pooled once on rank + 1 channels.

GGP is linear, so pooling the (V, Q) logits, pooling the factored field, and pooling the (V, D)
features then scoring all give the same logits (see :mod:`.pooling`; tested). Pooled features
are *not* re-normalised before scoring, which is what keeps the scores equal as well as the
labels. :func:`score_features` is the feature path, kept to check the others.

Centering (``centered(alpha)``): s_i <- normalise(s_i - alpha * mean_j s_j), the cloud's mean unit
feature partly removed from every voxel's before pooling and scoring. Why: a student distilled
on simulation gives every voxel a shared component (the mean unit feature of a cloud is far from
zero, on the real ScanNet scan and more so on simulated rooms: docs/accuracy.md, "Centering the
semantic field"); the cosine with each class name then leans
partly on how close that name is to the shared part rather than on what the voxel adds, and the
same few names gain everywhere. The share alpha is calibrated per model with the pooling (``GGPConfig.centering``).
It needs no labels and no queries, and a LowRankSemantic stays factored (one more rank).

Score (what the node thresholds)
--------------------------------
score = softmax over all candidates of logits / T (T = the checkpoint's ``score_temperature``),
taken at the best positive. Why softmax and not the raw cosine: cosine scales differ between
text encoders and checkpoints (CLIP-space cosines sit in a narrow band, MiniLM's spread wider), so
a raw-cosine threshold would have to be retuned per model; the softmax is in [0, 1], says how
clearly the positive beats the competition (which is what "is this a chair?" asks), and one
threshold (e.g. 0.5) means the same for every checkpoint trained at its recorded temperature.
Consequence, documented: with one positive, no negatives and background off, nothing competes
and every score is 1 -- add negatives or keep background on to make the threshold meaningful.

Labels: 1 + index of the best positive if a positive has the highest logit of all candidates and
its score is >= the threshold (when one is set); else 0. Every point gets the score of its best
positive, also where it is background (so a UI can show how close it came).

The one-query decision (the shipped vocabulary)
-----------------------------------------------
A robot asks for one thing at a time ("chair"). With only the user's negatives and the four
canonical phrases competing, "is this point a chair?" is decided against almost nothing: most
points go to the query. So, by default (``QuerySet.vocabulary``; None = on when ``background``
is on; node parameter ``use_vocabulary``), a shipped vocabulary of ~300 common indoor things
(``ov3d_ros/data/vocabulary/indoor.txt``, :mod:`.vocabulary`) competes too, under
:class:`QueryRule`, whose three parameters are calibrated per model (``ov3d-train
calibrate-query``, recorded in model.json ``query``):

* ``exclude``: a vocabulary name whose text cosine to a positive is >= this means the same thing
  ("couch" for "sofa") and is left out -- it must not take the query's points;
* ``alias``: a name with cosine in [alias, exclude) to a positive counts *as* that positive
  ("office chair", "armchair" for "chair"): a point it wins is labelled with the positive, and the
  positive's score is the softmax mass of the positive and its aliases (None = no aliases);
* ``margin``: subtracted from every vocabulary logit (cosine units), a bias between recall and
  precision for the query against the vocabulary (the user's negatives are not shifted).

Names equal to a positive, to a user negative or to a canonical phrase (case-insensitive) leave
the vocabulary (they compete, if at all, once, as what they already are). Closed-set callers
(``background=False``, e.g. ``ov3d-eval``'s closed mode) get no vocabulary unless they ask.

Cost: the vocabulary does not depend on the query, so per cloud (and pooling on/off) its logits
are summarised once (:class:`~.vocabulary.VocabularySummary`: the top-K names per voxel and the
log-sum-exp over all of them); a query then computes only its own few columns plus the columns of
the names it removes, and the competition's max and log-sum-exp follow exactly (the log-sum-exp
up to float cancellation, bounded below by the best remaining name). Tested against deciding
over all ~300 explicit columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .types import QuerySet

CANONICAL_NEGATIVES: tuple[str, ...] = ("object", "things", "stuff", "texture")


@dataclass(frozen=True)
class QueryRule:
    """How the shipped vocabulary competes with the queries (module doc, "The one-query decision").

    A calibrated model records its own rule in model.json ``query`` (``ov3d-train calibrate-query``),
    which the segmenter uses by default. The defaults, for models without one, are the rule
    calibrated for the v3 model on the 15 held-out ScanNet rooms (the best mean single-query IoU
    of its grid there, ahead of the vocabulary off and of the issue's probe rule, exclude 0.8 /
    alias 0.6 / no margin): nothing left out but exact duplicates, names at cosine >= 0.7 count as
    the query, and the vocabulary's logits lowered by 0.04 -- the margin matters most, and no
    margin at all does worse than the vocabulary off. The IoUs are in docs/accuracy.md, "Asked
    one at a time: the one-query decision".
    """

    exclude: float = 1.01  # vocabulary names with text cosine >= this to a positive are left out (1.01: none)
    alias: float | None = 0.7  # cosine in [alias, exclude): the name counts as that positive; None: never
    margin: float = 0.04  # subtracted from every vocabulary logit (cosine units)

    def __post_init__(self) -> None:
        if not -1.0 <= float(self.exclude) <= 1.01:
            raise ValueError(f"exclude must be a cosine in [-1, 1] (1.01: leave nothing out), got {self.exclude}")
        if self.alias is not None and not -1.0 <= float(self.alias) <= 1.01:
            raise ValueError(f"alias must be a cosine in [-1, 1] or None, got {self.alias}")
        if not -1.0 <= float(self.margin) <= 1.0:
            raise ValueError(f"margin must lie in [-1, 1] (cosine units), got {self.margin}")

    def record(self) -> dict:
        return {
            "exclude": float(self.exclude),
            "alias": None if self.alias is None else float(self.alias),
            "margin": float(self.margin),
        }

    @classmethod
    def from_record(cls, record: dict) -> QueryRule:
        """From model.json's ``query`` (extra keys, e.g. ``calibration``, are ignored)."""
        if not isinstance(record, dict):
            raise ValueError(f"a query rule is a mapping with exclude / alias / margin, got {record!r}")
        alias = record.get("alias", cls.alias)
        return cls(
            exclude=float(record.get("exclude", cls.exclude)),
            alias=None if alias is None else float(alias),
            margin=float(record.get("margin", cls.margin)),
        )


@dataclass(frozen=True)
class Candidates:
    """All names that compete for the points; the first ``num_positives`` are reported."""

    names: tuple[str, ...]
    num_positives: int

    @property
    def positives(self) -> tuple[str, ...]:
        return self.names[: self.num_positives]


def build_candidates(queries: QuerySet, canonical: tuple[str, ...] = CANONICAL_NEGATIVES) -> Candidates:
    """Positives, then negatives, then canonical background names, without duplicates."""
    names = list(queries.positives)
    seen = {name.casefold() for name in names}
    extra = list(queries.negatives) + (list(canonical) if queries.background else [])
    for name in extra:
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return Candidates(tuple(names), len(queries.positives))


def cosine_logits(unit_features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(V, D) unit features x (Q, D) unit text -> (V, Q) float32 cosines (fp16 inputs allowed)."""
    text = text.to(device=unit_features.device, dtype=unit_features.dtype)
    return (unit_features @ text.T).float()


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """Rows to unit length (zero rows stay zero), in the input dtype."""
    return F.normalize(features, dim=1)


# ------------------------------------------------------------------------------ semantic fields
@dataclass
class DenseSemantic:
    """Per-voxel unit semantic features stored as they are: (V, D)."""

    unit_features: torch.Tensor

    @property
    def num_voxels(self) -> int:
        return len(self.unit_features)

    @property
    def dim(self) -> int:
        return self.unit_features.shape[1]

    def logits(self, text: torch.Tensor) -> torch.Tensor:
        return cosine_logits(self.unit_features, text)

    def rows(self, index: torch.Tensor) -> DenseSemantic:
        """The field of the voxels ``index`` only (same logits for them)."""
        return DenseSemantic(self.unit_features[index])

    def features(self) -> torch.Tensor:
        """(V, D) float32 unit features."""
        return self.unit_features.float()

    def mean(self) -> torch.Tensor:
        """(D,) float32 mean of the unit features over the voxels."""
        return self.unit_features.float().mean(dim=0)

    def centered(self, alpha: float) -> DenseSemantic:
        """The field with ``alpha`` times the voxels' mean feature removed, rows re-normalised
        (module doc); alpha = 0 or an empty field: itself."""
        if alpha == 0 or self.num_voxels == 0:
            return self
        unit = self.unit_features.float()
        shifted = (unit - float(alpha) * self.mean()[None, :]) * (
            unit.norm(dim=1, keepdim=True) > 0
        )  # zero rows stay zero
        return DenseSemantic(normalize_features(shifted).to(self.unit_features.dtype))


@dataclass
class LowRankSemantic:
    """Unit semantic features kept in factored form: normalise(hidden @ weight.T + bias).

    The student's semantic head ends in a Linear layer (H -> D, H = 64 << D = 384), so

        cos(s_i, t) = (h_i . (weight^T t) + bias . t) / |s_i|,   |s_i|^2 = h_i^T G h_i + 2 c.h_i + |bias|^2

    with G = weight^T weight and c = weight^T bias. Logits for Q texts then cost V*H*Q instead of
    V*D*Q, and the (V, D) features are never built unless asked for (:meth:`unit`). On CPU the
    dense output layer plus its normalisation is a large share of the whole forward pass, while
    the norms here cost a small fraction of it (H-wide quadratic forms instead of D-wide rows).
    """

    hidden: torch.Tensor  # (V, H) float32
    weight: torch.Tensor  # (D, H)
    bias: torch.Tensor  # (D,)
    inv_norm: torch.Tensor  # (V,) 1 / |s_i| (0 where s_i = 0)

    @classmethod
    def from_linear(cls, hidden: torch.Tensor, layer: torch.nn.Linear) -> LowRankSemantic:
        weight = layer.weight.detach().float()
        bias = layer.bias.detach().float() if layer.bias is not None else weight.new_zeros(weight.shape[0])
        return cls.from_factors(hidden, weight, bias)

    @classmethod
    def from_factors(cls, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> LowRankSemantic:
        """The unit field normalise(hidden @ weight.T + bias): (V, H), (D, H), (D,)."""
        hidden, weight, bias = hidden.float(), weight.float(), bias.float()
        # the quadratic form in float64: its terms can be much larger than the norm they sum to
        h64, w64, b64 = hidden.double(), weight.double(), bias.double()
        gram, cross = w64.T @ w64, w64.T @ b64
        squared = ((h64 @ gram) * h64).sum(dim=1) + 2.0 * (h64 @ cross) + b64 @ b64
        norm = squared.clamp(min=0.0).sqrt()
        inv_norm = torch.where(norm > 1e-12, 1.0 / norm.clamp(min=1e-12), torch.zeros_like(norm)).float()
        return cls(hidden.contiguous(), weight, bias, inv_norm)

    @property
    def num_voxels(self) -> int:
        return len(self.hidden)

    @property
    def dim(self) -> int:
        return self.weight.shape[0]

    def logits(self, text: torch.Tensor) -> torch.Tensor:
        text = text.to(device=self.hidden.device, dtype=torch.float32)
        projected = text @ self.weight  # (Q, H)
        offset = text @ self.bias  # (Q,)
        return torch.addmm(offset[None, :], self.hidden, projected.T) * self.inv_norm[:, None]

    @property
    def rank(self) -> int:
        return self.hidden.shape[1]

    def rows(self, index: torch.Tensor) -> LowRankSemantic:
        """The field of the voxels ``index`` only (same logits for them)."""
        return LowRankSemantic(self.hidden[index], self.weight, self.bias, self.inv_norm[index])

    def features(self) -> torch.Tensor:
        """(V, D) float32 unit features, materialised."""
        return torch.addmm(self.bias[None, :], self.hidden, self.weight.T) * self.inv_norm[:, None]

    def mean(self) -> torch.Tensor:
        """(D,) float32 mean unit feature, from the factors: weight mean(inv_norm h) + mean(inv_norm) bias."""
        return self.weight @ (self.hidden * self.inv_norm[:, None]).mean(dim=0) + self.inv_norm.mean() * self.bias

    def centered(self, alpha: float) -> LowRankSemantic:
        """The field with ``alpha`` times the voxels' mean feature removed, re-normalised (module
        doc), still factored: s_i - alpha mu = inv_norm_i (weight h_i + bias - alpha |s~_i| mu), so
        hidden gains the channel alpha |s~_i| (|s~_i| = 1 / inv_norm_i, the unnormalised output's
        length) and weight the column -mu. alpha = 0 or an empty field: itself."""
        if alpha == 0 or self.num_voxels == 0:
            return self
        mu = self.mean()
        length = torch.where(self.inv_norm > 0, 1.0 / self.inv_norm.clamp(min=1e-30), torch.zeros_like(self.inv_norm))
        hidden = torch.cat([self.hidden, float(alpha) * length[:, None]], dim=1)
        weight = torch.cat([self.weight, -mu[:, None]], dim=1)
        return LowRankSemantic.from_factors(hidden, weight, self.bias)

    def pooled(self, pool) -> PooledLowRank:
        """GGP of this field once, for every future query (``pool``: (V, C) -> (V, C)).

        The unit features are s_i = inv_norm_i * (weight h_i + bias), so by linearity
        P(s) = P(inv_norm * h) weight^T + P(inv_norm) bias^T: pooling rank + 1 channels gives
        the pooled features -- and the pooled logits of any text -- exactly.
        """
        values = torch.cat([self.hidden * self.inv_norm[:, None], self.inv_norm[:, None]], dim=1)
        pooled = pool(values)
        return PooledLowRank(pooled[:, :-1].contiguous(), pooled[:, -1].contiguous(), self.weight, self.bias)


@dataclass
class PooledLowRank:
    """GGP-pooled unit semantic features in factored form: basis @ weight^T + scale * bias.

    ``logits(text)`` equals pooling ``LowRankSemantic.logits(text)`` with the same graph (exact up
    to float rounding), so a query on a cloud with a pooled field costs one (V, rank) x (rank, Q)
    product and no pooling at all.
    """

    basis: torch.Tensor  # (V, rank) = P(inv_norm * h)
    scale: torch.Tensor  # (V,) = P(inv_norm)
    weight: torch.Tensor  # (D, rank)
    bias: torch.Tensor  # (D,)

    @property
    def num_voxels(self) -> int:
        return len(self.basis)

    @property
    def dim(self) -> int:
        return self.weight.shape[0]

    def logits(self, text: torch.Tensor) -> torch.Tensor:
        text = text.to(device=self.basis.device, dtype=torch.float32)
        return torch.addmm(self.scale[:, None] * (text @ self.bias)[None, :], self.basis, (text @ self.weight).T)

    def rows(self, index: torch.Tensor) -> PooledLowRank:
        """The pooled field of the voxels ``index`` only (same logits for them)."""
        return PooledLowRank(self.basis[index], self.scale[index], self.weight, self.bias)

    def features(self) -> torch.Tensor:
        """(V, D) float32 pooled features (not re-normalised, see core.ggp)."""
        return torch.addmm(self.scale[:, None] * self.bias[None, :], self.basis, self.weight.T)


SemanticField = DenseSemantic | LowRankSemantic | PooledLowRank


@dataclass
class VoxelDecision:
    """Per-voxel outcome of one query set."""

    semantic: torch.Tensor  # (V,) int32, 1 + positive index, 0 = background
    score: torch.Tensor  # (V,) float32, softmax probability of the best positive


def decide(
    logits: torch.Tensor,
    num_positives: int,
    temperature: float,
    threshold: float | None = None,
) -> VoxelDecision:
    """Logits (V, Q) over the candidates -> labels and scores (module doc: the rules)."""
    if logits.ndim != 2 or not 1 <= num_positives <= logits.shape[1]:
        raise ValueError(f"logits {tuple(logits.shape)} must have at least num_positives={num_positives} columns")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # softmax probability of the best positive, without materialising the (V, Q) softmax:
    # p = exp(s_best - s_top) / sum_q exp(s_q - s_top), s = logits / T (cheaper than a full softmax)
    scaled = logits.float() * (1.0 / float(temperature))
    top, winner = scaled.max(dim=1)
    best, best_positive = scaled[:, :num_positives].max(dim=1)
    best_score = torch.exp(best - top) / torch.exp(scaled - top[:, None]).sum(dim=1)
    positive_wins = winner < num_positives
    if threshold is not None:
        positive_wins &= best_score >= float(threshold)
    semantic = torch.where(positive_wins, best_positive + 1, torch.zeros_like(best_positive)).to(torch.int32)
    return VoxelDecision(semantic, best_score)


@dataclass
class DecisionParts:
    """What :func:`decide_groups` decides from, for one query on one cloud (calibration reuses it
    to try several margins without recomputing the logits)."""

    answer: torch.Tensor  # (V, A) logits of the positives, then their aliases
    owners: torch.Tensor  # (A,) positive index of each answer column
    others: torch.Tensor  # (V, N) explicit competitors (user negatives, canonical phrases)
    competition: tuple[torch.Tensor, torch.Tensor] | None  # the vocabulary, summarised (margin applied)
    temperature: float

    def decide(self, threshold: float | None = None, extra_margin: float = 0.0) -> VoxelDecision:
        """The decision; ``extra_margin`` lowers the vocabulary's logits further (calibration)."""
        competition = self.competition
        if competition is not None and extra_margin:
            competition = (competition[0] - extra_margin, competition[1] - extra_margin / self.temperature)
        return decide_groups(self.answer, self.owners, self.others, self.temperature, threshold, competition)


def decide_groups(
    answer: torch.Tensor,
    owners: torch.Tensor,
    others: torch.Tensor | None,
    temperature: float,
    threshold: float | None = None,
    competition: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> VoxelDecision:
    """The decision with aliases and a summarised competition (module doc, "The one-query decision").

    answer:      (V, A) logits of the positives and their aliases; owners (A,) the positive index
                 each column answers for (0..P-1; the positives themselves first, in order).
    others:      (V, N) logits of explicit competitors (the user's negatives, canonical phrases,
                 or the vocabulary's columns themselves), or None.
    competition: optional (max logit (V,), log-sum-exp of logits / T (V,)) of further competitors
                 summarised elsewhere (:class:`~.vocabulary.VocabularySummary`); -inf = none.

    A point is labelled 1 + owner of its best answer column when that column beats every
    competitor (ties go to the answer, as in :func:`decide`); its score is the softmax mass of
    that owner's columns over all candidates.
    """
    if answer.ndim != 2 or answer.shape[1] == 0 or owners.shape != (answer.shape[1],):
        raise ValueError(f"answer {tuple(answer.shape)} needs one owner per column, got owners {tuple(owners.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    inv = 1.0 / float(temperature)
    scaled = answer.float() * inv
    answer_max, answer_arg = scaled.max(dim=1)
    rival = torch.full_like(answer_max, float("-inf"))
    if others is not None and others.shape[1]:
        scaled_others = others.float() * inv
        rival = torch.maximum(rival, scaled_others.max(dim=1).values)
    if competition is not None:
        rival = torch.maximum(rival, competition[0].float() * inv)
    top = torch.maximum(answer_max, rival)
    exp_answer = torch.exp(scaled - top[:, None])
    total = exp_answer.sum(dim=1)
    if others is not None and others.shape[1]:
        total = total + torch.exp(scaled_others - top[:, None]).sum(dim=1)
    if competition is not None:
        total = total + torch.exp(competition[1].float() - top)
    owners = owners.to(answer.device)
    best = owners[answer_arg]
    group = (exp_answer * (owners[None, :] == best[:, None])).sum(dim=1)
    score = group / total
    wins = answer_max >= rival
    if threshold is not None:
        wins &= score >= float(threshold)
    semantic = torch.where(wins, best + 1, torch.zeros_like(best)).to(torch.int32)
    return VoxelDecision(semantic, score)


def score_logits(
    logits: torch.Tensor,
    pool,  # callable (V, C) -> (V, C), or None for no pooling
    candidates: Candidates,
    temperature: float,
    threshold: float | None,
) -> VoxelDecision:
    """The logit path: pool the (V, Q) logits, then decide."""
    if pool is not None:
        logits = pool(logits)
    return decide(logits, candidates.num_positives, temperature, threshold)


def score_features(
    pooled_features: torch.Tensor,
    text: torch.Tensor,
    candidates: Candidates,
    temperature: float,
    threshold: float | None,
) -> VoxelDecision:
    """The feature path: features already pooled (not re-normalised), then decide.

    Using the pooled features as they are (not re-normalised) keeps the scores equal to the logit
    path's; the labels would be equal either way (argmax ignores a row's norm).
    """
    logits = pooled_features.float() @ text.to(pooled_features.device).float().T
    return decide(logits, candidates.num_positives, temperature, threshold)
