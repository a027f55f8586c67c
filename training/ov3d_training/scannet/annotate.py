"""Captions and spatial referrals for a real scan's instances, made by the simulator's own text code.

The facts come from :func:`..sim.relations.compute_relations` on the measured room
(:mod:`.room`), the words from :mod:`..sim.texts` (captions from colour and size, referrals from
relations), so a real room's texts read like a simulated room's and MPEC sees one text
distribution. Facts that name a side of the room without a wall instance along it are dropped:
their text, or the relation record beside it, would point at no labelled wall.

The sidecar keeps the simulator's keys that training reads (``entities`` with ``id`` = the scan's
instance id, ``category``, ``noun``, ``captions``, ``referrals``) and says where the labels came from.
"""

from __future__ import annotations

from ..sim.relations import THRESHOLDS, Relation, compute_relations
from ..sim.texts import Describer, captions, referrals, size_adjective
from .room import MeasuredRoom

FORMAT = "ov3d_real/1"


def usable_facts(facts: list[Relation]) -> list[Relation]:
    """The facts that neither are about nor name a missing wall (entity id 0)."""
    return [fact for fact in facts if fact.subject != 0 and 0 not in fact.targets]


def build_real_annotations(room: MeasuredRoom, source: dict) -> dict:
    """The sidecar for one measured scan (``source`` describes the scan: name, dataset, terms)."""
    scene = room.scene
    facts = usable_facts(compute_relations(scene))
    attrs = {
        e.id: {
            "color": room.colors[e.id],
            "size": size_adjective(e.category, e.size),
            "material": None,
            "dimensions_m": [round(float(v), 3) for v in e.size],
        }
        for e in scene.entities
    }
    describer = Describer(scene, attrs)
    entities = []
    for e in scene.entities:
        entities.append(
            {
                "id": room.instance_of_entity[e.id],
                "category": e.category,
                "noun": e.noun,
                "attributes": attrs[e.id],
                "captions": captions(e, attrs[e.id], scene.room_type),
                "referrals": referrals(e, facts, describer),
                "aabb": e.box.to_json(),
                "mount": e.mount,
                "support": room.instance_of_entity.get(e.support) if e.support else None,
                "wall": e.wall,
            }
        )
    to_instance = room.instance_of_entity
    return {
        "format": FORMAT,
        "room": {
            "type": scene.room_type,
            "size_m": [round(float(v), 3) for v in scene.size],
            "walls_found": room.walls_found,
        },
        "entities": entities,
        "relations": [
            {"type": f.type, "subject": to_instance[f.subject], "targets": [to_instance.get(t, 0) for t in f.targets]}
            for f in facts
        ],
        "relation_thresholds_m": THRESHOLDS,
        "source": source,
    }
