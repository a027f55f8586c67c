"""Viewpoint-free spatial relations that hold in a generated scene's geometry.

All relations are computed from the placed entities' world boxes (axis-aligned; furniture only
turns by multiples of 90 degrees) and from how each entity is held, never from an intended
layout. Thresholds (metres) are part of the annotation so readers can re-check every fact:

=================  ==========================================================================
on                 resting on the support's mesh (found by ray casts when it was placed)
under              a piece of furniture directly under another that rests on it (cabinet under
                   the counter top)
above / below      wall-hung entity (or door, window) over a floor-standing one: its bottom at
                   most ``ABOVE_MAX`` above the other's top, its centre over the other's
                   footprint (+``ABOVE_XY``)
next to            same footing (both on the floor, on the same support, or on the same wall),
                   footprints at most ``NEXT_TO`` apart, overlapping heights
in front of        both on the floor; the subject's footprint on the target's front side (its -y
                   side, for targets in ``HAS_FRONT``), at most ``IN_FRONT`` from it and
                   overlapping its width
near               footprint at most ``NEAR_OPENING`` from a door's or window's footprint
between            next to two entities on opposite sides (along x or y), overlapping them
                   across that axis
in the corner      on the floor, within ``CORNER`` of two perpendicular walls
against the wall   on the floor, within ``AGAINST`` of a wall
with               a wall and a door or window in it
behind             a wall behind a floor-standing entity that has its back against it
=================  ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Box, horizontal_gap
from .scene import Entity, Scene

NEXT_TO = 0.3
IN_FRONT = 0.8
# Furniture with a front (the side facing the room): "the coffee table in front of the sofa".
HAS_FRONT = frozenset(
    {
        "sofa",
        "bed",
        "desk",
        "bookshelf",
        "cabinet",
        "dresser",
        "wardrobe",
        "refrigerator",
        "stove",
        "piano",
        "other furniture",
        "television",
        "toilet",
        "sink",
        "washing machine",
        "whiteboard",
    }
)
NEAR_OPENING = 0.5
CORNER = 0.25
AGAINST = 0.06
ABOVE_MAX = 1.2
ABOVE_XY = 0.1

THRESHOLDS = {
    "next_to": NEXT_TO,
    "in_front": IN_FRONT,
    "near_opening": NEAR_OPENING,
    "corner": CORNER,
    "against": AGAINST,
    "above_max": ABOVE_MAX,
    "above_xy": ABOVE_XY,
}


@dataclass(frozen=True)
class Relation:
    type: str
    subject: int
    targets: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"type": self.type, "subject": self.subject, "targets": list(self.targets)}


def _z_overlap(a: Box, b: Box) -> bool:
    return a.lo[2] < b.hi[2] and b.lo[2] < a.hi[2]


def _footing(e: Entity) -> tuple:
    if e.mount == "on":
        return ("on", e.support)
    if e.mount == "wall":
        return ("wall", e.wall)
    return (e.mount,)


def wall_distances(box: Box, size: tuple[float, float, float]) -> list[float]:
    """Distance of a box to walls 0 (y=0), 1 (x=W), 2 (y=L), 3 (x=0)."""
    W, L, _ = size
    return [box.lo[1], W - box.hi[0], L - box.hi[1], box.lo[0]]


def is_above(a: Box, b: Box) -> bool:
    if a.lo[2] < b.hi[2] - 0.01 or a.lo[2] - b.hi[2] > ABOVE_MAX:
        return False
    c = a.center
    e = b.expanded(ABOVE_XY)
    return e.lo[0] <= c[0] <= e.hi[0] and e.lo[1] <= c[1] <= e.hi[1]


def in_front_of(box: Box, target: Entity) -> bool:
    """``box`` lies on ``target``'s front side (target turned by a multiple of 90 degrees)."""
    c, s = math.cos(target.yaw), math.sin(target.yaw)
    corners = np.array([[x, y] for x in (box.lo[0], box.hi[0]) for y in (box.lo[1], box.hi[1])])
    local = (corners - np.asarray(target.position[:2])) @ np.array([[c, -s], [s, c]])  # world -> target frame
    w, d = target.size[0], target.size[1]
    lo, hi = local.min(axis=0), local.max(axis=0)
    gap = -d / 2 - hi[1]  # how far in front of the target's front face the box ends
    return -1e-6 <= gap <= IN_FRONT and lo[0] < w / 2 and hi[0] > -w / 2


def compute_relations(scene: Scene) -> list[Relation]:
    facts: list[Relation] = []
    ents = scene.entities
    objects = [e for e in ents if e.mount not in ("structure", "opening")]
    openings = [e for e in ents if e.mount == "opening"]
    boxes = {e.id: e.box for e in ents}

    for e in objects:
        if e.mount == "on" and e.support is not None:
            facts.append(Relation("on", e.id, (e.support,)))
            support = scene.entity(e.support)
            if e.category == "counter" and support.mount != "structure":
                facts.append(Relation("under", support.id, (e.id,)))

    # doors and windows count as hung: "the radiator below the window"
    hanging = [e for e in objects if e.mount == "wall"] + openings
    standing = [e for e in objects if e.mount == "floor"]
    for a in hanging:
        for b in standing:
            if is_above(boxes[a.id], boxes[b.id]):
                facts.append(Relation("above", a.id, (b.id,)))
                facts.append(Relation("below", b.id, (a.id,)))

    next_to: dict[int, list[int]] = {e.id: [] for e in objects}
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            if _footing(a) != _footing(b) or a.support == b.id or b.support == a.id:
                continue
            if horizontal_gap(boxes[a.id], boxes[b.id]) <= NEXT_TO and _z_overlap(boxes[a.id], boxes[b.id]):
                facts.append(Relation("next to", a.id, (b.id,)))
                facts.append(Relation("next to", b.id, (a.id,)))
                next_to[a.id].append(b.id)
                next_to[b.id].append(a.id)

    for b in standing:
        if b.category not in HAS_FRONT or abs(math.sin(2 * b.yaw)) > 1e-6:
            continue
        for a in standing:
            if a.id != b.id and in_front_of(boxes[a.id], b):
                facts.append(Relation("in front of", a.id, (b.id,)))

    for a in objects:
        for o in openings:
            if horizontal_gap(boxes[a.id], boxes[o.id]) <= NEAR_OPENING:
                facts.append(Relation("near", a.id, (o.id,)))
                facts.append(Relation("near", o.id, (a.id,)))

    for a in objects:
        ids = next_to[a.id]
        ca = boxes[a.id].center
        found = None
        for ib, b_id in enumerate(ids):
            for c_id in ids[ib + 1 :]:
                bb, bc = boxes[b_id], boxes[c_id]
                for axis in (0, 1):
                    other = 1 - axis
                    lo_b, hi_c = (bb, bc) if bb.center[axis] < bc.center[axis] else (bc, bb)
                    if not (lo_b.hi[axis] <= ca[axis] + 1e-6 and ca[axis] <= hi_c.lo[axis] + 1e-6):
                        continue
                    ab = boxes[a.id]
                    if all(x.lo[other] < ab.hi[other] and ab.lo[other] < x.hi[other] for x in (bb, bc)):
                        found = (b_id, c_id)
                        break
                if found:
                    break
            if found:
                break
        if found:
            facts.append(Relation("between", a.id, found))

    for a in objects:
        if a.mount != "floor":
            continue
        d = wall_distances(boxes[a.id], scene.size)
        walls = [scene.wall_entity[i] for i in range(4)]
        for i in range(4):
            j = (i + 1) % 4
            if d[i] <= CORNER and d[j] <= CORNER:
                facts.append(Relation("in the corner", a.id, (walls[i], walls[j])))
                break
        for i in range(4):
            if d[i] <= AGAINST:
                facts.append(Relation("against the wall", a.id, (walls[i],)))
                if a.wall == i:
                    facts.append(Relation("behind", walls[i], (a.id,)))

    for o in openings:
        if o.wall is not None:
            facts.append(Relation("with", scene.wall_entity[o.wall], (o.id,)))
    return facts
