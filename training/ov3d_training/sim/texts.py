"""Entity attributes, captions and spatial referrals (the two text kinds MPEC trains with).

Captions describe an entity alone from its attributes ("a tall white bookshelf"). Referrals locate
it by relations that hold in the scene ("the red mug on the table, near the window"); each
referral keeps the relations it states, so a reader can check every one against the geometry.
"""

from __future__ import annotations

from collections import Counter

from .relations import Relation
from .scene import Entity, Scene
from .vocabulary import CLASS_BY_NAME

PRIORITY = (
    "on",
    "under",
    "below",
    "above",
    "in front of",
    "between",
    "next to",
    "near",
    "in the corner",
    "against the wall",
    "with",
    "behind",
)
MAX_REFERRALS = 3


def size_adjective(category: str, size: tuple[float, float, float]) -> str | None:
    """'tall' / 'low' (furniture) or 'short' (objects) / 'large' / 'small' relative to the class'
    typical size ('thick' / 'thin' for flat things such as books), or None."""
    cls = CLASS_BY_NAME.get(category)
    if cls is None or cls.group == "structure":
        return None
    tw, td, th = cls.typical_size
    w, d, h = size
    if min(tw, td, th) <= 0:
        return None
    r_h = h / th
    r_v = (max(w * d * h, 1e-9) / (tw * td * th)) ** (1 / 3)
    flat = th < 0.06  # books, keyboards: their height is a thickness
    if r_h >= 1.25 and r_h >= 1.1 * r_v:
        return "thick" if flat else "tall"
    if r_h <= 0.75 and r_h <= 0.9 * r_v:
        return "thin" if flat else ("low" if cls.group == "furniture" else "short")
    if r_v >= 1.3:
        return "large"
    if r_v <= 0.75:
        return "small"
    return None


def attributes(entity: Entity) -> dict:
    return {
        "color": entity.color(),
        "size": size_adjective(entity.category, entity.size),
        "material": entity.material,
        "dimensions_m": [round(float(v), 3) for v in entity.size],
    }


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _join(*words: str | None) -> str:
    return " ".join(w for w in words if w)


def captions(entity: Entity, attrs: dict, room_type: str) -> list[str]:
    noun = entity.noun
    if entity.category in ("floor", "ceiling"):
        out = [f"the {noun} of the {room_type}", _article(_join(attrs["color"], noun))]
    elif entity.category == "wall":
        out = [f"a wall of the {room_type}", _article(_join(attrs["color"], "wall"))]
    else:
        material = attrs["material"] if attrs["material"] and attrs["material"] not in noun else None
        full = _article(_join(attrs["size"], attrs["color"], material, noun))
        out = [full, _article(_join(attrs["color"], noun)), f"{_article(noun)} in the {room_type}"]
        if noun != entity.category:
            out.append(_article(_join(attrs["color"], entity.category)))
    seen, unique = set(), []
    for text in out:
        if text not in seen:
            seen.add(text)
            unique.append(text)
    return unique


class Describer:
    """Names entities in referrals; adds the colour when the noun alone is ambiguous."""

    def __init__(self, scene: Scene, attrs: dict[int, dict]):
        self.scene = scene
        self.attrs = attrs
        self.noun_count = Counter(e.noun for e in scene.entities)

    def name(self, entity_id: int, subject: bool = False) -> str:
        e = self.scene.entity(entity_id)
        color = self.attrs[entity_id]["color"]
        if e.category == "wall":
            return "wall"
        if subject or self.noun_count[e.noun] > 1:
            return _join(color, e.noun)
        return e.noun

    def phrase(self, rel: Relation) -> str:
        t = [self.name(i) for i in rel.targets]
        if rel.type == "between":
            return f"between the {t[0]} and the {t[1]}"
        if rel.type == "in the corner":
            return "in the corner"
        if rel.type == "against the wall":
            return "against the wall"
        if rel.type == "with":
            return f"with the {t[0]}"
        return f"{rel.type} the {t[0]}"


def referrals(entity: Entity, facts: list[Relation], describer: Describer) -> list[dict]:
    mine = [r for r in facts if r.subject == entity.id]
    mine.sort(key=lambda r: (PRIORITY.index(r.type), r.targets))
    # one fact per relation type, in priority order; at most one "against the wall" / "in the corner"
    chosen: list[Relation] = []
    types = set()
    for r in mine:
        if r.type in types:
            continue
        if r.type == "against the wall" and "in the corner" in types:
            continue
        types.add(r.type)
        chosen.append(r)
    subject = describer.name(entity.id, subject=True)
    out = []
    for r in chosen[:MAX_REFERRALS]:
        out.append({"text": f"the {subject} {describer.phrase(r)}", "relations": [_rel_json(r)]})
    if len(chosen) >= 2:
        a, b = chosen[0], chosen[1]
        out.append(
            {
                "text": f"the {subject} {describer.phrase(a)}, {describer.phrase(b)}",
                "relations": [_rel_json(a), _rel_json(b)],
            }
        )
    return out


def _rel_json(r: Relation) -> dict:
    return {"type": r.type, "targets": list(r.targets)}
