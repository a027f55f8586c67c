"""A real labelled scan as the simulator's :class:`~..sim.scene.Scene`: measured entities, how each rests.

The simulator knows how it placed every entity; a real scan only has points with NYU40 and
instance labels. This module measures what the relation code (:mod:`..sim.relations`) needs:

* the room frame: a rectangle W x L from the floor's and walls' points (1st-99th percentile, so a
  few stray points do not stretch it), origin at its corner, z = 0 at the floor;
* each named instance's box (1st-99th percentile of its points per axis);
* its *mount*: structure (wall, floor, ceiling), opening (door, window, blinds, on the nearest
  side), ``on`` another entity (its bottom within ``SUPPORT_GAP`` of that entity's top and its
  centre over that entity's footprint), else ``wall`` (off the floor with nothing under it: hung on
  the nearest side, as wall cabinets and pictures are);
* the side each entity is against (``wall``), and a yaw that turns its front away from that wall
  (the simulator's "in front of" needs a front);
* which wall instance is each of the four sides (the largest one lying along it); a side without
  one is ``None``, and facts naming it are dropped.

Instances without a name (NYU40 "otherstructure", "otherprop", unlabelled) are left out of the
scene: they are never named in another entity's referral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..sim.colors import dominant_point_color
from ..sim.geometry import Box
from ..sim.scene import Entity, Scene
from .labels import real_class

FLOOR_CONTACT = 0.15  # m: an entity whose bottom is this close to the floor stands on it
SUPPORT_GAP = 0.12  # m: bottom of an entity vs top of the one it rests on
WALL_SIDE_MAX = 0.45  # m: a wall instance lies along a side when its box is this close to it
MIN_POINTS = 20  # instances with fewer points are not measured
ROOM_TYPE_RULES = (  # (room type, classes that decide it), first match wins
    ("bathroom", {"toilet", "bathtub", "shower curtain"}),
    ("bedroom", {"bed", "nightstand", "dresser"}),
    ("kitchen", {"refrigerator", "counter"}),
    ("bathroom", {"mirror", "towel"}),  # a sink without a kitchen's refrigerator or counter
    ("office", {"desk", "whiteboard"}),
)
DEFAULT_ROOM_TYPE = "living room"


@dataclass
class MeasuredRoom:
    scene: Scene
    instance_of_entity: dict[int, int]  # scene entity id -> the scan's instance id
    colors: dict[int, str | None]  # entity id -> dominant colour name of its points
    walls_found: int  # sides with a wall instance along them


def _box(points: np.ndarray) -> Box:
    lo, hi = np.percentile(points, [1, 99], axis=0)
    return Box(tuple(float(v) for v in lo), tuple(float(v) for v in np.maximum(hi, lo + 1e-3)))


def _side_distances(box: Box, width: float, length: float) -> np.ndarray:
    """Distance of a box to sides 0 (y=0), 1 (x=W), 2 (y=L), 3 (x=0): the simulator's wall order."""
    return np.array([box.lo[1], width - box.hi[0], length - box.hi[1], box.lo[0]])


def _facing_yaw(side: int) -> float:
    """Yaw that turns an entity's front (its local -y) away from wall ``side``."""
    return (math.pi, -math.pi / 2, 0.0, math.pi / 2)[side]


def room_type_of(categories: set[str]) -> str:
    for room_type, decisive in ROOM_TYPE_RULES:
        if categories & decisive:
            return room_type
    return DEFAULT_ROOM_TYPE


def measure_room(
    points: np.ndarray, colors: np.ndarray | None, nyu40: np.ndarray, instances: np.ndarray
) -> MeasuredRoom:
    """Points (N, 3) z up, colours (N, 3) uint8 or None, NYU40 ids (N,), instance ids (N,) -> the room."""
    points = np.asarray(points, np.float64)
    nyu40 = np.asarray(nyu40, np.int64)
    instances = np.asarray(instances, np.int64)
    frame = np.isin(nyu40, (1, 2))  # wall and floor points outline the room
    outline = points[frame] if frame.sum() >= 100 else points
    floor = points[nyu40 == 2]
    z0 = float(np.percentile(floor[:, 2], 5)) if len(floor) >= 100 else float(np.percentile(points[:, 2], 1))
    lo_xy = np.percentile(outline[:, :2], 1, axis=0)
    hi_xy = np.percentile(outline[:, :2], 99, axis=0)
    shift = np.array([lo_xy[0], lo_xy[1], z0])
    width, length = (float(v) for v in hi_xy - lo_xy)
    height = float(np.percentile(points[:, 2], 99) - z0)
    local = points - shift

    # one entry per named instance: (instance id, class, box, point indices)
    order = np.argsort(instances, kind="stable")
    ids, starts = np.unique(instances[order], return_index=True)
    groups = np.split(order, starts[1:])
    measured = []
    for instance_id, members in zip(ids, groups):
        if instance_id <= 0 or len(members) < MIN_POINTS:
            continue
        labels, counts = np.unique(nyu40[members], return_counts=True)
        cls = real_class(int(labels[np.argmax(counts)]))
        if cls.category is None:
            continue
        measured.append((int(instance_id), cls, _box(local[members]), members))

    entities: list[Entity] = []
    instance_of: dict[int, int] = {}
    color_of: dict[int, str | None] = {}
    for entity_id, (instance_id, cls, box, members) in enumerate(measured, start=1):
        entities.append(
            Entity(
                id=entity_id,
                category=cls.category,
                noun=cls.noun_for(instance_id),
                parts=[],
                size=tuple(float(v) for v in box.size),
                position=(*(float(v) for v in box.center[:2]), box.lo[2]),
                yaw=0.0,
                mount="structure",
                source="scannet",
                box_override=box,
            )
        )
        instance_of[entity_id] = instance_id
        color_of[entity_id] = dominant_point_color(colors[members]) if colors is not None else None

    # walls along the four sides: the largest wall instance whose box hugs each side
    wall_entity: dict[int, int] = {}
    best_size: dict[int, int] = {}
    for e, (_, cls, box, members) in zip(entities, measured):
        if cls.category != "wall":
            continue
        d = _side_distances(box, width, length)
        side = int(np.argmin(d))
        across = box.size[1] if side in (0, 2) else box.size[0]
        if d[side] <= WALL_SIDE_MAX and across <= 2 * WALL_SIDE_MAX and len(members) > best_size.get(side, 0):
            wall_entity[side], best_size[side] = e.id, len(members)
        e.wall = side

    for e, (_, cls, box, _) in zip(entities, measured):
        d = _side_distances(box, width, length)
        side = int(np.argmin(d))
        if cls.group == "structure":
            continue
        if cls.group == "opening":
            e.mount, e.wall = "opening", side
            continue
        support = _support_of(e, entities, measured)
        if box.lo[2] <= FLOOR_CONTACT:
            e.mount = "floor"
        elif support is not None:
            e.mount, e.support = "on", support
        else:  # off the floor with nothing under it: hung on the nearest wall (wall cabinets, pictures)
            e.mount, e.wall, e.support = "wall", side, wall_entity.get(side)
        if e.mount == "floor":
            e.wall = side
            e.yaw = _facing_yaw(side)
            if side in (1, 3):  # the entity's own width runs along y
                e.size = (e.size[1], e.size[0], e.size[2])

    room_type = room_type_of({e.category for e in entities})
    scene = Scene(
        room_type,
        (width, length, height),
        walls=[],
        entities=entities,
        openings=[],
        wall_entity={side: wall_entity.get(side, 0) for side in range(4)},
    )
    return MeasuredRoom(scene, instance_of, color_of, len(wall_entity))


def _support_of(entity: Entity, entities: list[Entity], measured) -> int | None:
    """The highest furniture top just under ``entity``'s bottom with its centre over that top."""
    box = entity.box
    center = box.center
    best, best_top = None, -math.inf
    for other, (_, cls, obox, _) in zip(entities, measured):
        if other.id == entity.id or cls.group in ("structure", "opening"):
            continue
        top = obox.hi[2]
        if not -SUPPORT_GAP <= box.lo[2] - top <= SUPPORT_GAP:
            continue
        inside = (
            obox.lo[0] - 0.05 <= center[0] <= obox.hi[0] + 0.05 and obox.lo[1] - 0.05 <= center[1] <= obox.hi[1] + 0.05
        )
        if inside and top > best_top:
            best, best_top = other.id, top
    return best
