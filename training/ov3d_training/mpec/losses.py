"""The three MPEC losses (Wang et al., "Masked Point-Entity Contrast", arXiv 2504.19500), per scan.

Notation (one scan, two augmented and masked views u and v of the same points):

* point-to-entity: ``s[i, k] = mean_{j in E_k} cos(F_i^u, F_j^v)``, the mean cosine between
  point i of view u and the points of entity k in view v. Entity 0 is the *background entity*
  (points that belong to no entity), a candidate like any other. Loss: cross-entropy of
  ``s / tau`` against the entity of point i, averaged over points, in both directions (u->v and
  v->u, averaged).
* text-to-entity: each text picks its entity among the scan's entities by softmax over
  ``cos(text, entity) / tau``; when a text matches several entities (a category name shared by
  two chairs) the target is uniform over them.
* entity-to-text: every (entity, text) pair is a binary decision, ``sigmoid(cos / tau + bias)``,
  because one entity matches many texts (its name, captions, referrals).

Everything is vectorised; a scan's cost is O(N * K) for N points and K entities. The mean cosine
to an entity equals the dot product with the mean of the entity's *unit* features, which is how
``s`` is computed (no N x N matrix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """fp16 (autocast) -> fp32 for the softmax/BCE; fp32 and fp64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def entity_mean_of_unit_features(
    features: torch.Tensor, entity: torch.Tensor, num_entities: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, D) mean of the L2-normalised features of each entity's points and (K,) point counts.

    Entities without points get a zero row and count 0.
    """
    unit = F.normalize(_at_least_fp32(features), dim=1)
    sums = unit.new_zeros((num_entities, unit.shape[1])).index_add_(0, entity, unit)
    counts = torch.bincount(entity, minlength=num_entities).to(unit.dtype)
    return sums / counts.clamp(min=1)[:, None], counts


def point_to_entity_logits(
    anchor: torch.Tensor, target: torch.Tensor, entity: torch.Tensor, num_entities: int, temperature: float
) -> torch.Tensor:
    """(N, K) logits ``s[i, k] / tau`` of each anchor point (view u) against the entities of view v.

    Entities absent from the target view get -inf (never a candidate).
    """
    prototypes, counts = entity_mean_of_unit_features(target, entity, num_entities)
    logits = F.normalize(_at_least_fp32(anchor), dim=1) @ prototypes.T / temperature
    return logits.masked_fill(counts[None, :] == 0, float("-inf"))


def point_to_entity_loss(
    features_u: torch.Tensor,
    features_v: torch.Tensor,
    entity: torch.Tensor,
    num_entities: int,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Cross-view point-to-entity InfoNCE of one scan, both directions averaged.

    features_u, features_v: (N, D) features of the same N points in views u and v (same order).
    entity: (N,) int64 in [0, num_entities); 0 is the background entity.
    """
    return point_to_entity_terms(features_u, features_v, entity, num_entities, temperature)[0]


def point_to_entity_terms(
    features_u: torch.Tensor,
    features_v: torch.Tensor,
    entity: torch.Tensor,
    num_entities: int,
    temperature: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy): :func:`point_to_entity_loss` and the fraction of points (both directions)
    whose most similar entity in the other view is their own."""
    if features_u.shape != features_v.shape or len(entity) != len(features_u):
        raise ValueError(
            f"point_to_entity_loss: views {tuple(features_u.shape)} / {tuple(features_v.shape)} and "
            f"entity ({len(entity)},) must describe the same points"
        )
    u_to_v = point_to_entity_logits(features_u, features_v, entity, num_entities, temperature)
    v_to_u = point_to_entity_logits(features_v, features_u, entity, num_entities, temperature)
    loss = 0.5 * (F.cross_entropy(u_to_v, entity) + F.cross_entropy(v_to_u, entity))
    with torch.no_grad():
        accuracy = 0.5 * ((u_to_v.argmax(1) == entity).float().mean() + (v_to_u.argmax(1) == entity).float().mean())
    return loss, accuracy


def text_to_entity_loss(
    entity_embeddings: torch.Tensor, text_embeddings: torch.Tensor, match: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """Softmax over entities for each text; multi-positive texts get a uniform target.

    entity_embeddings: (E, D); text_embeddings: (T, D) (both normalised here);
    match: (T, E) bool, every row with at least one True.
    """
    match = match.to(torch.bool)
    if not bool(match.any(dim=1).all()):
        raise ValueError("text_to_entity_loss: every text must match at least one entity")
    logits = (
        F.normalize(_at_least_fp32(text_embeddings), dim=1)
        @ F.normalize(_at_least_fp32(entity_embeddings), dim=1).T
        / temperature
    )
    target = match.to(logits.dtype) / match.sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def entity_to_text_loss(
    entity_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    match: torch.Tensor,
    temperature: float = 0.07,
    bias: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Binary cross-entropy of every (entity, text) pair, mean over the E x T pairs.

    match: (T, E) bool as in :func:`text_to_entity_loss`. ``bias`` shifts the logits (a learnable
    scalar in the model: texts of one scene are similar to each other, so the decision boundary
    should not be forced to cos = 0).
    """
    logits = (
        F.normalize(_at_least_fp32(entity_embeddings), dim=1) @ F.normalize(_at_least_fp32(text_embeddings), dim=1).T
    )
    logits = logits / temperature + bias
    return F.binary_cross_entropy_with_logits(logits, match.T.to(logits.dtype))


def retrieval_accuracy(
    entity_embeddings: torch.Tensor, text_embeddings: torch.Tensor, match: torch.Tensor
) -> tuple[float, float]:
    """(text -> entity, entity -> text) top-1 accuracy: the most similar entity of a text is one it
    names; the most similar text of an entity is one of its texts (entities with texts only)."""
    with torch.no_grad():
        sim = (
            F.normalize(_at_least_fp32(text_embeddings), dim=1)
            @ F.normalize(_at_least_fp32(entity_embeddings), dim=1).T
        )  # (T, E)
        match = match.to(torch.bool)
        rows = torch.arange(len(sim), device=sim.device)
        t2e = match[rows, sim.argmax(dim=1)].float().mean().item()
        named = match.any(dim=0)
        cols = torch.nonzero(named).flatten()
        e2t = match[sim[:, cols].argmax(dim=0), cols].float().mean().item() if len(cols) else float("nan")
    return t2e, e2t
