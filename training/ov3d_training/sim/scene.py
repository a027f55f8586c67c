"""A simulated room as data: its walls, openings and entities, and how each entity is held.

The room spans ``[0, W] x [0, L] x [0, H]`` (metres, Z up). Walls are numbered 0 (south, y = 0),
1 (east, x = W), 2 (north, y = L), 3 (west, x = 0); each is a slab of thickness ``WALL_T`` outside
the room. Each entity records how it is held (``mount``: floor, on a support, on a wall, in an
opening), which :mod:`.relations` turns into verifiable facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .colors import dominant_color
from .geometry import Box, RenderPart, rotation_z

WALL_T = 0.15


@dataclass
class Wall:
    index: int
    origin: np.ndarray  # (2,) start corner
    direction: np.ndarray  # (2,) unit vector along the wall
    normal: np.ndarray  # (2,) unit vector into the room
    length: float

    @property
    def yaw(self) -> float:
        """Yaw that turns an entity's front (-y) towards the room (back against this wall)."""
        return float(math.atan2(self.normal[0], -self.normal[1]))

    def point(self, s: float, offset: float) -> np.ndarray:
        """The floor point ``s`` along the wall and ``offset`` into the room (negative: into the wall)."""
        return self.origin + self.direction * s + self.normal * offset

    def along(self, position) -> float:
        """How far along the wall ``position`` (x, y, ...) lies: the inverse of :meth:`point`'s ``s``."""
        return float(np.dot(np.asarray(position[:2]) - self.origin, self.direction))


@dataclass
class Opening:
    entity_id: int
    wall: int
    s: float  # centre along the wall
    width: float
    bottom: float
    height: float
    kind: str  # "door" | "window"


@dataclass
class Entity:
    id: int
    category: str
    noun: str
    parts: list[RenderPart]
    size: tuple[float, float, float]
    position: tuple[float, float, float]  # base centre in the world
    yaw: float
    mount: str  # "structure" | "opening" | "floor" | "on" | "wall"
    support: int | None = None  # entity it rests on (mount "on") or hangs on (mount "wall", a wall id)
    wall: int | None = None  # wall index (0..3) it stands against / hangs on / sits in
    source: str = "catalog"
    attribution: dict = field(default_factory=dict)
    material: str | None = None
    box_override: Box | None = None  # structure: its own world box

    @property
    def box(self) -> Box:
        if self.box_override is not None:
            return self.box_override
        return Box.from_pose(self.size, self.position, self.yaw)

    def world_triangles(self) -> np.ndarray:
        tri = np.concatenate([p.triangles() for p in self.parts]) if self.parts else np.zeros((0, 3, 3))
        return tri @ rotation_z(self.yaw).T + np.asarray(self.position)

    def color(self) -> str | None:
        return dominant_color([p.appearance() for p in self.parts], [p.area for p in self.parts])


@dataclass
class Scene:
    room_type: str
    size: tuple[float, float, float]  # W, L, H
    walls: list[Wall]
    entities: list[Entity]
    openings: list[Opening]
    wall_entity: dict[int, int]  # wall index -> entity id

    def entity(self, entity_id: int) -> Entity:
        return self.entities[entity_id - 1]
