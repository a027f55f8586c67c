"""Procedural rooms: walls with door and window openings, furnished without interpenetration.

The room spans ``[0, W] x [0, L] x [0, H]`` (metres, Z up). Walls are numbered 0 (south, y = 0),
1 (east, x = W), 2 (north, y = L), 3 (west, x = 0); each is a slab of thickness ``WALL_T`` outside the
room, cut around its openings. Entities are placed by rejection sampling against axis-aligned
boxes (furniture is only rotated by multiples of 90 degrees, so the boxes are tight); things that
rest on a support are dropped onto the support's actual mesh by vertical ray casts over their
footprint, and only accepted where the surface under the footprint is flat. Each entity records how
it is held (floor, on a support, on a wall, in an opening), which :mod:`relations` turns into
verifiable facts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .colors import dominant_color, sample_color
from .geometry import Box, Footprint, RenderPart, box_area, raycast_down, rotation_z
from .library import Model, ModelLibrary
from . import procedural as proc

WALL_T = 0.15
ROOM_TYPES = ("living room", "bedroom", "kitchen", "office", "bathroom")
PROCEDURAL_ATTRIBUTION = {"source": "procedural (ov3d_ros simulator)", "license": "Apache-2.0"}

# Probability that a catalogue model gets a random named colour on its main material.
RECOLOR = {
    "chair": 0.5, "sofa": 0.6, "bed": 0.4, "cabinet": 0.4, "table": 0.3, "desk": 0.3, "bookshelf": 0.3,
    "mug": 0.8, "cup": 0.2, "bottle": 0.5, "backpack": 0.9, "bag": 0.6, "box": 0.3, "trash can": 0.7,
    "lamp": 0.5, "vase": 0.7, "toilet": 0.2, "sink": 0.2, "bathtub": 0.2, "dresser": 0.4, "nightstand": 0.4,
    "wardrobe": 0.4, "other furniture": 0.4, "towel": 0.9, "shoe": 0.6, "toy": 0.3, "laptop": 0.3,
    "refrigerator": 0.3, "washing machine": 0.2, "door": 0.3, "speaker": 0.3, "telephone": 0.4, "fan": 0.5,
    "bowl": 0.6, "clock": 0.4, "coffee maker": 0.4, "microwave": 0.3, "stove": 0.2, "radiator": 0.2,
}
MATERIAL_WORDS = (
    ("wooden", ("wood", "wooden", "oak", "teak", "alder")),
    ("glass", ("glass",)),
    ("metal", ("iron", "metal")),
    ("rattan", ("rattan",)),
    ("plastic", ("plastic",)),
)
WALL_COLORS = ("white", "beige", "grey", "white", "white", "yellow", "blue", "green")
FLOOR_COLORS = ("brown", "beige", "grey", "brown", "white", "black")


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
        return self.origin + self.direction * s + self.normal * offset


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


def _material(name: str) -> str | None:
    words = name.lower().replace("-", " ").split()
    for material, keys in MATERIAL_WORDS:
        if any(k in words for k in keys):
            return material
    return None


class RoomBuilder:
    """Builds one :class:`Scene`. All randomness comes from ``rng``; same seed, same room."""

    def __init__(self, library: ModelLibrary, rng: np.random.Generator, room_type: str | None = None):
        self.lib = library
        self.rng = rng
        self.room_type = room_type or ROOM_TYPES[int(rng.integers(len(ROOM_TYPES)))]
        if self.room_type not in ROOM_TYPES:
            raise ValueError(f"room type must be one of {ROOM_TYPES}, got {self.room_type!r}")
        self.entities: list[Entity] = []
        self.openings: list[Opening] = []
        self.keep_out: list[Box] = []
        self._tri_cache: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------------------ structure
    def _room_size(self) -> tuple[float, float, float]:
        ranges = {
            "living room": ((3.6, 6.5), (3.4, 6.0)),
            "bedroom": ((3.0, 5.0), (3.0, 5.0)),
            "kitchen": ((2.8, 5.0), (2.8, 5.0)),
            "office": ((3.0, 5.5), (3.0, 5.0)),
            "bathroom": ((2.2, 3.6), (2.2, 3.4)),
        }[self.room_type]
        r = self.rng
        return (round(float(r.uniform(*ranges[0])), 2), round(float(r.uniform(*ranges[1])), 2),
                round(float(r.uniform(2.4, 2.9)), 2))

    def _make_walls(self) -> list[Wall]:
        W, L, _ = self.size
        specs = [((0, 0), (1, 0), (0, 1), W), ((W, 0), (0, 1), (-1, 0), L),
                 ((W, L), (-1, 0), (0, -1), W), ((0, L), (0, -1), (1, 0), L)]
        return [Wall(i, np.array(o, float), np.array(d, float), np.array(n, float), float(ln))
                for i, (o, d, n, ln) in enumerate(specs)]

    def _new_id(self) -> int:
        return len(self.entities) + 1

    def _add(self, entity: Entity) -> Entity:
        assert entity.id == len(self.entities) + 1
        self.entities.append(entity)
        return entity

    def build(self) -> Scene:
        self.size = self._room_size()
        self.walls = self._make_walls()
        W, L, H = self.size
        wall_name, wall_rgb = sample_color(self.rng, WALL_COLORS)
        _, floor_rgb = sample_color(self.rng, FLOOR_COLORS)
        floor_box = Box((-WALL_T, -WALL_T, -0.05), (W + WALL_T, L + WALL_T, 0.0))
        self._structure("floor", "floor", floor_box, floor_rgb)
        ceiling_box = Box((-WALL_T, -WALL_T, H), (W + WALL_T, L + WALL_T, H + 0.05))
        self._structure("ceiling", "ceiling", ceiling_box, (0.93, 0.93, 0.92))
        self.wall_entity = {}
        for wall in self.walls:
            e = self._structure("wall", "wall", self._wall_box(wall), wall_rgb)
            e.wall = wall.index
            self.wall_entity[wall.index] = e.id
        self._openings()
        # Wall slabs are cut only now that the openings are known.
        for wall in self.walls:
            e = self.entities[self.wall_entity[wall.index] - 1]
            e.parts = self._wall_parts(wall, wall_rgb)
        getattr(self, "_furnish_" + self.room_type.replace(" ", "_"))()
        return Scene(self.room_type, self.size, self.walls, self.entities, self.openings, self.wall_entity)

    def _structure(self, category: str, noun: str, box: Box, rgb) -> Entity:
        half = tuple(float(v) for v in box.size / 2)
        part = RenderPart(kind="box", rgb=tuple(rgb), area=box_area(half), half_extents=half,
                          offset=tuple(float(v) for v in box.center))
        return self._add(Entity(self._new_id(), category, noun, [part], tuple(float(v) for v in box.size),
                                (0.0, 0.0, 0.0), 0.0, "structure", source="procedural",
                                attribution=dict(PROCEDURAL_ATTRIBUTION), box_override=box))

    def _wall_span(self, wall: Wall) -> tuple[float, float]:
        # South and north walls cover the corners.
        return (-WALL_T, wall.length + WALL_T) if wall.index in (0, 2) else (0.0, wall.length)

    def _wall_piece(self, wall: Wall, s0: float, s1: float, z0: float, z1: float) -> Box:
        a = wall.point(s0, -WALL_T)
        b = wall.point(s1, 0.0)
        lo = np.minimum(a, b)
        hi = np.maximum(a, b)
        return Box((lo[0], lo[1], z0), (hi[0], hi[1], z1))

    def _wall_box(self, wall: Wall) -> Box:
        s0, s1 = self._wall_span(wall)
        return self._wall_piece(wall, s0, s1, 0.0, self.size[2])

    def _wall_parts(self, wall: Wall, rgb) -> list[RenderPart]:
        H = self.size[2]
        s_lo, s_hi = self._wall_span(wall)
        cuts = sorted((o for o in self.openings if o.wall == wall.index), key=lambda o: o.s)
        pieces = []
        cursor = s_lo
        for o in cuts:
            a, b = o.s - o.width / 2, o.s + o.width / 2
            if a > cursor + 1e-4:
                pieces.append((cursor, a, 0.0, H))
            if o.bottom > 1e-3:
                pieces.append((a, b, 0.0, o.bottom))
            if o.bottom + o.height < H - 1e-3:
                pieces.append((a, b, o.bottom + o.height, H))
            cursor = b
        if s_hi > cursor + 1e-4:
            pieces.append((cursor, s_hi, 0.0, H))
        parts = []
        for s0, s1, z0, z1 in pieces:
            box = self._wall_piece(wall, s0, s1, z0, z1)
            half = tuple(float(v) for v in box.size / 2)
            parts.append(RenderPart(kind="box", rgb=tuple(rgb), area=box_area(half), half_extents=half,
                                    offset=tuple(float(v) for v in box.center)))
        return parts

    # ------------------------------------------------------------------------------ openings
    def _openings(self) -> None:
        H = self.size[2]
        door_wall = int(self.rng.integers(4))
        door = self.lib.pick(self.rng, "door", max_width=min(1.1, self.walls[door_wall].length - 0.8),
                             max_height=H - 0.1)
        if door is not None:
            self._place_opening(door, door_wall, "door", bottom=0.0)
        n_windows = int(self.rng.choice([1, 1, 2, 2, 3] if self.room_type != "bathroom" else [0, 1, 1]))
        for _ in range(n_windows):
            wall = int(self.rng.integers(4))
            model = self.lib.pick(self.rng, "window", max_width=self.walls[wall].length - 0.8)
            if model is None:
                continue
            h = model.entry.size_m[2]
            bottom = model.entry.elevation_cm / 100.0
            if bottom < 0.3 and h < 1.6:  # catalogue windows without a sill height: a typical one
                bottom = float(self.rng.uniform(0.8, 1.0))
            if bottom + h > H - 0.1:
                continue
            self._place_opening(model, wall, "window", bottom=bottom)

    def _place_opening(self, model: Model, wall_index: int, kind: str, bottom: float) -> None:
        wall = self.walls[wall_index]
        w, d, h = model.entry.size_m
        for _ in range(20):
            s = float(self.rng.uniform(0.35 + w / 2, wall.length - 0.35 - w / 2)) if wall.length > w + 0.7 else None
            if s is None:
                return
            clash = any(o.wall == wall_index and abs(o.s - s) < (o.width + w) / 2 + 0.3 for o in self.openings)
            if not clash:
                break
        else:
            return
        eid = self._new_id()
        xy = wall.point(s, -WALL_T / 2)
        entity = self._catalog_entity(eid, model, (w, d, h), (float(xy[0]), float(xy[1]), bottom), wall.yaw,
                                      "opening", scale_jitter=False)
        entity.wall = wall_index
        entity.support = self.wall_entity[wall_index]
        # Glass panes are dropped: a depth sensor mostly sees through them.
        kept = [p for p in entity.parts if not p.transparent]
        entity.parts = kept or entity.parts
        self._add(entity)
        self.openings.append(Opening(eid, wall_index, s, w, bottom, h, kind))
        # Keep the door's swing and the space in front of windows clear.
        reach = w + 0.1 if kind == "door" else 0.35
        a = wall.point(s - w / 2 - 0.05, 0.0)
        b = wall.point(s + w / 2 + 0.05, reach)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        top = self.size[2] if kind == "door" else bottom + h
        self.keep_out.append(Box((lo[0], lo[1], bottom), (hi[0], hi[1], top)))

    # ------------------------------------------------------------------------------ entities
    def _catalog_entity(self, eid: int, model: Model, size, position, yaw, mount, scale_jitter=True) -> Entity:
        if scale_jitter:
            k = float(self.rng.uniform(0.92, 1.08))
            size = tuple(float(v * k) for v in size)
        paths = model.asset.part_paths()
        parts = [
            RenderPart(kind="mesh_file", rgb=tuple(p.rgb), area=p.area, mesh_file=str(path), scale=tuple(size),
                       texture=str(path.parent / p.texture) if p.texture else None, mean_rgb=tuple(p.mean_rgb),
                       transparent=p.transparent)
            for p, path in zip(model.asset.parts, paths)
        ]
        entity = Entity(eid, model.cls, model.entry.noun, parts, tuple(size), tuple(position), float(yaw), mount,
                        source="catalog", attribution=model.entry.attribution(), material=_material(model.entry.name))
        self._maybe_recolor(entity)
        return entity

    def _maybe_recolor(self, entity: Entity) -> None:
        if self.rng.random() >= RECOLOR.get(entity.category, 0.0):
            return
        main = max(entity.parts, key=lambda p: p.area)
        from .colors import color_name

        target = color_name(main.appearance())
        _, rgb = sample_color(self.rng)
        for p in entity.parts:
            if color_name(p.appearance()) == target:
                p.rgb, p.texture, p.mean_rgb = rgb, None, rgb

    def _proc_entity(self, category: str, built, position, yaw, mount) -> Entity:
        parts, size, noun = built
        return Entity(self._new_id(), category, noun, parts, tuple(float(v) for v in size),
                      tuple(float(v) for v in position), float(yaw), mount, source="procedural",
                      attribution=dict(PROCEDURAL_ATTRIBUTION))

    # ------------------------------------------------------------------------------ free space
    def _inside(self, box: Box) -> bool:
        W, L, H = self.size
        return box.lo[0] >= -1e-6 and box.lo[1] >= -1e-6 and box.hi[0] <= W + 1e-6 and box.hi[1] <= L + 1e-6 \
            and box.hi[2] <= H - 0.02

    def free(self, box: Box, ignore: tuple[int, ...] = (), margin: float = 0.0, keep_out: bool = True) -> bool:
        if not self._inside(box):
            return False
        for e in self.entities:
            if e.mount == "structure" or e.id in ignore:
                continue
            if box.intersects(e.box, margin):
                return False
        if keep_out and any(box.intersects(k) for k in self.keep_out):
            return False
        return True

    def _commit(self, entity: Entity) -> Entity:
        return self._add(entity)

    # ------------------------------------------------------------------------------ placement
    def _sized(self, model_or_built) -> tuple[float, float, float]:
        if isinstance(model_or_built, Model):
            return model_or_built.entry.size_m
        return model_or_built[1]

    def _make(self, model_or_built, category, position, yaw, mount, size=None) -> Entity:
        if isinstance(model_or_built, Model):
            e = self._catalog_entity(self._new_id(), model_or_built, size or model_or_built.entry.size_m, position,
                                     yaw, mount, scale_jitter=size is None)
            return e
        return self._proc_entity(category, model_or_built, position, yaw, mount)

    def against_wall(self, source, category: str, *, walls=None, corner: bool = False, elevation: float = 0.0,
                     gap: tuple[float, float] = (0.01, 0.05), tries: int = 40, mount: str | None = None,
                     s_range: tuple[float, float] | None = None) -> Entity | None:
        """Back against a wall (``elevation`` > 0: hung on it), optionally in a corner."""
        if source is None:
            return None
        mount = mount or ("wall" if elevation > 0 else "floor")
        for _ in range(tries):
            wall = self.walls[int(self.rng.choice(walls if walls is not None else range(4)))]
            # draw the scale once per try so the box we test is the box we keep
            probe = self._make(source, category, (0.0, 0.0, 0.0), wall.yaw, mount)
            w, d, h = probe.size
            if wall.length < w + 0.02:
                continue
            if corner:
                s = w / 2 + 0.01 if self.rng.random() < 0.5 else wall.length - w / 2 - 0.01
            elif s_range is not None:
                lo, hi = max(s_range[0], w / 2 + 0.01), min(s_range[1], wall.length - w / 2 - 0.01)
                if lo > hi:
                    continue
                s = float(self.rng.uniform(lo, hi))
            else:
                s = float(self.rng.uniform(w / 2 + 0.01, wall.length - w / 2 - 0.01))
            g = float(self.rng.uniform(*gap))
            xy = wall.point(s, g + d / 2)
            probe.position = (float(xy[0]), float(xy[1]), float(elevation))
            probe.wall = wall.index
            if mount == "wall":
                probe.support = self.wall_entity[wall.index]
            if self.free(probe.box):
                return self._commit(probe)
        return None

    def in_middle(self, source, category: str, *, margin: float = 0.6, tries: int = 40) -> Entity | None:
        if source is None:
            return None
        W, L, _ = self.size
        for _ in range(tries):
            yaw = float(self.rng.integers(4)) * math.pi / 2
            probe = self._make(source, category, (0.0, 0.0, 0.0), yaw, "floor")
            b = Box.from_pose(probe.size, (0.0, 0.0, 0.0), yaw)
            hx, hy = b.size[0] / 2, b.size[1] / 2
            if W - 2 * (margin + hx) <= 0 or L - 2 * (margin + hy) <= 0:
                continue
            x = float(self.rng.uniform(margin + hx, W - margin - hx))
            y = float(self.rng.uniform(margin + hy, L - margin - hy))
            probe.position = (x, y, 0.0)
            if self.free(probe.box, margin=0.05):
                return self._commit(probe)
        return None

    def in_front_of(self, source, category: str, anchor: Entity, *, distance=(0.3, 0.6), facing: bool = True,
                    tries: int = 20, tuck: float = 0.0) -> Entity | None:
        """In front of ``anchor`` (its -y side), facing it (chairs, coffee tables)."""
        if source is None or anchor is None:
            return None
        fwd = rotation_z(anchor.yaw)[:2, :2] @ np.array([0.0, -1.0])
        side = np.array([-fwd[1], fwd[0]])
        for _ in range(tries):
            yaw = anchor.yaw + (math.pi if facing else 0.0)
            probe = self._make(source, category, (0.0, 0.0, 0.0), yaw, "floor")
            d = probe.size[1]
            dist = anchor.size[1] / 2 + float(self.rng.uniform(*distance)) + d / 2 - tuck
            lateral = float(self.rng.uniform(-0.25, 0.25)) * max(anchor.size[0] - probe.size[0], 0.0)
            xy = np.asarray(anchor.position[:2]) + fwd * dist + side * lateral
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            if self.free(probe.box):
                return self._commit(probe)
        return None

    def around_table(self, table: Entity, n: int) -> list[Entity]:
        """Up to ``n`` chairs on the table's sides, facing it."""
        chairs = []
        sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
        order = self.rng.permutation(4)
        model = self.lib.pick(self.rng, "chair", max_height=1.05, min_height=0.75)
        for k in order:
            if len(chairs) >= n or model is None:
                break
            sx, sy = sides[k]
            local_dir = np.array([sx, sy], dtype=float)
            world_dir = rotation_z(table.yaw)[:2, :2] @ local_dir
            # a chair's front (-y) must face the table: its yaw turns -y into -world_dir
            yaw = math.atan2(-world_dir[0], world_dir[1])
            probe = self._make(model, "chair", (0.0, 0.0, 0.0), yaw, "floor")
            half_table = table.size[1] / 2 if sy else table.size[0] / 2
            dist = half_table + probe.size[1] / 2 + float(self.rng.uniform(0.03, 0.15))
            xy = np.asarray(table.position[:2]) + world_dir * dist
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            if self.free(probe.box):
                chairs.append(self._commit(probe))
        return chairs

    def beside(self, source, category: str, anchor: Entity, *, gap=(0.02, 0.15), tries: int = 12) -> Entity | None:
        """Left or right of ``anchor`` along its wall (nightstands by a bed, a lamp by a sofa)."""
        if source is None or anchor is None:
            return None
        rot = rotation_z(anchor.yaw)[:2, :2]
        for _ in range(tries):
            probe = self._make(source, category, (0.0, 0.0, 0.0), anchor.yaw, "floor")
            side = 1.0 if self.rng.random() < 0.5 else -1.0
            along = anchor.size[0] / 2 + float(self.rng.uniform(*gap)) + probe.size[0] / 2
            back = anchor.size[1] / 2 - probe.size[1] / 2  # align the backs (both against the wall)
            xy = np.asarray(anchor.position[:2]) + rot @ np.array([side * along, back])
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            probe.wall = anchor.wall
            if self.free(probe.box):
                return self._commit(probe)
        return None

    def on(self, source, category: str, support: Entity, *, align: bool = False, region: str = "any",
           flatness: float = 0.012, tries: int = 25) -> Entity | None:
        """Rest on ``support``'s mesh: rays over the footprint must all hit a flat patch."""
        if source is None or support is None:
            return None
        tri = self._tri_cache.get(support.id)
        if tri is None:
            tri = self._tri_cache[support.id] = support.world_triangles()
        sw, sd, sh = support.size
        rot = rotation_z(support.yaw)[:2, :2]
        for _ in range(tries):
            turn = float(self.rng.normal(0, 0.08)) if align else float(self.rng.uniform(-math.pi, math.pi))
            yaw = support.yaw + turn
            probe = self._make(source, category, (0.0, 0.0, 0.0), yaw, "on")
            w, d, h = probe.size
            reach = math.hypot(w, d) / 2 if not align else max(w, d) / 2
            if region == "head":  # the pillow end of a bed (its back, against the wall)
                ly_lo, ly_hi = sd / 2 - 0.12 - d / 2 - 0.25, sd / 2 - 0.12 - d / 2
                lx = float(self.rng.uniform(-1, 1)) * max(sw / 2 - w / 2 - 0.08, 0.0)
            elif region == "back":  # sofa seat, against the backrest
                ly_lo, ly_hi = -0.05, sd / 2 - 0.15 - d / 2
                lx = float(self.rng.uniform(-1, 1)) * max(sw / 2 - w / 2 - 0.2, 0.0)
            else:
                ly_lo, ly_hi = -(sd / 2 - reach - 0.02), sd / 2 - reach - 0.02
                lx = float(self.rng.uniform(-1, 1)) * max(sw / 2 - reach - 0.02, 0.0)
            if ly_hi < ly_lo:
                continue
            ly = float(self.rng.uniform(ly_lo, ly_hi))
            xy = np.asarray(support.position[:2]) + rot @ np.array([lx, ly])
            foot = Footprint((float(xy[0]), float(xy[1])), (w, d), yaw)
            z = raycast_down(tri, foot.grid(5))
            if np.isnan(z).any() or z.max() - z.min() > flatness or z.max() < support.position[2] + 0.05 * sh:
                continue
            probe.position = (float(xy[0]), float(xy[1]), float(z.max()) + 0.002)
            probe.support = support.id
            if self.free(probe.box, ignore=(support.id,)):
                return self._commit(probe)
        return None

    def above(self, source, category: str, anchor: Entity, *, gap=(0.15, 0.45), tries: int = 12) -> Entity | None:
        """Hung on the wall behind ``anchor`` (a picture over a sofa)."""
        if source is None or anchor is None or anchor.wall is None:
            return None
        wall = self.walls[anchor.wall]
        s_anchor = float(np.dot(np.asarray(anchor.position[:2]) - wall.origin, wall.direction))
        for _ in range(tries):
            probe = self._make(source, category, (0.0, 0.0, 0.0), wall.yaw, "wall")
            w, d, h = probe.size
            z = anchor.box.hi[2] + float(self.rng.uniform(*gap))
            if z + h > self.size[2] - 0.1:
                continue
            s = s_anchor + float(self.rng.uniform(-0.15, 0.15)) * anchor.size[0]
            xy = wall.point(s, 0.005 + d / 2)
            probe.position = (float(xy[0]), float(xy[1]), float(z))
            probe.wall, probe.support = wall.index, self.wall_entity[wall.index]
            if self.free(probe.box):
                return self._commit(probe)
        return None

    def near(self, source, category: str, anchor: Entity, *, gap=(0.05, 0.3), tries: int = 20) -> Entity | None:
        """On the floor within ``gap`` of ``anchor``'s footprint (a bin by a desk)."""
        if source is None or anchor is None:
            return None
        b = anchor.box
        for _ in range(tries):
            yaw = float(self.rng.integers(4)) * math.pi / 2 if category not in ("plant", "trash can") else \
                float(self.rng.uniform(-math.pi, math.pi))
            probe = self._make(source, category, (0.0, 0.0, 0.0), yaw, "floor")
            pb = Box.from_pose(probe.size, (0.0, 0.0, 0.0), yaw)
            hx, hy = pb.size[0] / 2, pb.size[1] / 2
            g = float(self.rng.uniform(*gap))
            side = int(self.rng.integers(4))
            if side == 0:
                x, y = b.lo[0] - g - hx, float(self.rng.uniform(b.lo[1], b.hi[1]))
            elif side == 1:
                x, y = b.hi[0] + g + hx, float(self.rng.uniform(b.lo[1], b.hi[1]))
            elif side == 2:
                x, y = float(self.rng.uniform(b.lo[0], b.hi[0])), b.lo[1] - g - hy
            else:
                x, y = float(self.rng.uniform(b.lo[0], b.hi[0])), b.hi[1] + g + hy
            probe.position = (float(x), float(y), 0.0)
            if self.free(probe.box):
                return self._commit(probe)
        return None

    # ------------------------------------------------------------------------------ shared pieces
    def pick(self, cls: str, **filters) -> Model | None:
        return self.lib.pick(self.rng, cls, **filters)

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def small_object(self, cls: str) -> Model | tuple | None:
        builders = {"book": proc.book, "keyboard": proc.keyboard, "pillow": proc.pillow}
        if cls in builders and (not self.lib.candidates(cls) or self.chance(0.6)):
            return builders[cls](self.rng)
        if cls == "monitor" and self.chance(0.75):
            return proc.monitor(self.rng)
        return self.pick(cls, max_height=0.6, max_width=0.7, wall_mounted=False)

    def pillow_on(self, support: Entity, region: str) -> Entity | None:
        """A pillow at a bed's head or against a sofa's back; anywhere flat on it when that end is
        taken (many catalogue beds come with their own pillows modelled in)."""
        pillow = proc.pillow(self.rng)
        return (self.on(pillow, "pillow", support, align=True, region=region, flatness=0.05)
                or self.on(pillow, "pillow", support, align=True, flatness=0.05))

    def clutter(self, support: Entity, classes: tuple[str, ...], n: int) -> None:
        for _ in range(n):
            cls = classes[int(self.rng.integers(len(classes)))]
            align = cls in ("monitor", "keyboard", "laptop", "television", "picture")  # they face the room
            self.on(self.small_object(cls), cls, support, align=align)

    def curtains(self, p: float) -> None:
        for o in list(self.openings):
            if o.kind != "window" or not self.chance(p):
                continue
            wall = self.walls[o.wall]
            height = self.size[2] - 0.05 - float(self.rng.uniform(0.0, 0.1))
            for side in (-1, 1):
                if side == 1 and self.chance(0.25):
                    continue
                built = proc.curtain(self.rng, height)
                w, d, _ = built[1]
                # just outside the window's keep-out zone (its width + 5 cm each side)
                s = o.s + side * (o.width / 2 + w / 2 + 0.06)
                if s - w / 2 < 0 or s + w / 2 > wall.length:
                    continue
                xy = wall.point(s, 0.03 + d / 2)
                e = self._proc_entity("curtain", built, (float(xy[0]), float(xy[1]), 0.02), wall.yaw, "wall")
                e.wall, e.support = wall.index, self.wall_entity[wall.index]
                if self.free(e.box):
                    self._commit(e)

    def pictures(self, anchors: list[Entity], p_above: float, n_free: int) -> None:
        for a in anchors:
            if a is not None and a.wall is not None and self.chance(p_above):
                self.above(proc.picture(self.rng, self.lib.paintings), "picture", a)
        for _ in range(n_free):
            self.against_wall(proc.picture(self.rng, self.lib.paintings), "picture",
                              elevation=float(self.rng.uniform(1.2, 1.6)), gap=(0.005, 0.01))

    def wall_item(self, cls: str, elevation: tuple[float, float], **filters) -> Entity | None:
        model = self.pick(cls, **filters)
        if model is None:
            return None
        return self.against_wall(model, cls, elevation=float(self.rng.uniform(*elevation)), gap=(0.005, 0.02))

    def floor_extras(self, spec: dict[str, float]) -> None:
        """Floor-standing odds and ends: class -> probability; corners for plants and bins."""
        for cls, p in spec.items():
            if not self.chance(p):
                continue
            if cls == "plant":
                model = self.pick("plant", min_height=0.5)
            elif cls == "lamp":
                model = self.pick("lamp", min_height=1.0)
            else:
                model = self.pick(cls, max_height=1.3, wall_mounted=False)
            corner = cls in ("plant", "trash can", "lamp") and self.chance(0.6)
            self.against_wall(model, cls, corner=corner)

    def radiator_under_window(self, p: float) -> None:
        for o in self.openings:
            if o.kind == "window" and o.bottom > 0.5 and self.chance(p):
                model = self.pick("radiator", max_height=o.bottom - 0.15, max_width=o.width)
                if model is not None:
                    wall = self.walls[o.wall]
                    self.against_wall(model, "radiator", walls=[o.wall], elevation=0.12, gap=(0.03, 0.06),
                                      s_range=(o.s - 0.1, o.s + 0.1))

    # ------------------------------------------------------------------------------ rooms
    def _furnish_living_room(self) -> None:
        sofa = self.against_wall(self.pick("sofa", max_width=3.0), "sofa")
        if sofa is not None:
            for _ in range(1 + int(self.chance(0.6))):
                self.pillow_on(sofa, "back")
            table = self.in_front_of(self.pick("table", max_height=0.55, max_width=1.5), "table", sofa,
                                     distance=(0.35, 0.55), facing=False)
            if table is not None:
                self.clutter(table, ("mug", "book", "bowl", "vase", "telephone", "cup", "bottle"),
                             int(self.rng.integers(1, 4)))
            if self.chance(0.5):
                self.beside(self.pick("lamp", min_height=1.0) or self.pick("plant", min_height=0.5), "lamp", sofa)
        if self.chance(0.5):
            for _ in range(int(self.rng.integers(1, 3))):
                self.in_middle(self.pick("chair", min_height=0.65, max_height=1.05), "chair", margin=0.5)
        r = self.rng.random()
        if r < 0.55:
            stand = self.against_wall(self.pick("other furniture", noun="tv stand"), "other furniture")
            if stand is not None:
                tv = self.on(self.pick("television", wall_mounted=False), "television", stand, align=True,
                             flatness=0.02)
                if tv is None:  # no room on top: hang one above it
                    self.above(self.pick("television", wall_mounted=True), "television", stand, gap=(0.1, 0.3))
        elif r < 0.85:
            self.wall_item("television", (1.0, 1.3), wall_mounted=True)
        if self.chance(0.4):
            other = self.against_wall(self.pick("other furniture", max_height=0.8, min_height=0.35, max_depth=0.7),
                                      "other furniture")
            if other is not None:
                self.clutter(other, ("vase", "lamp", "box", "plant", "clock", "speaker"), int(self.rng.integers(1, 3)))
        if self.chance(0.6):
            shelf = self.against_wall(self.pick("bookshelf", max_height=2.2), "bookshelf")
            if shelf is not None and shelf.size[2] < 1.6:
                self.clutter(shelf, ("vase", "plant", "book", "clock", "box"), int(self.rng.integers(1, 3)))
        if self.chance(0.3):
            cab = self.against_wall(self.pick("cabinet", wall_mounted=False, max_height=1.3), "cabinet")
            if cab is not None:
                self.clutter(cab, ("vase", "lamp", "plant", "book", "speaker", "picture"), int(self.rng.integers(1, 3)))
        if self.chance(0.12):
            self.against_wall(self.pick("piano"), "piano")
        self.pictures([sofa], 0.7, int(self.rng.integers(0, 2)))
        self.curtains(0.7)
        self.radiator_under_window(0.4)
        if self.chance(0.25):
            self.wall_item("clock", (1.5, 1.8), wall_mounted=True)
        self.floor_extras({"plant": 0.8, "lamp": 0.3, "trash can": 0.2, "toy": 0.2, "backpack": 0.2, "speaker": 0.2,
                           "box": 0.2, "shoe": 0.15})

    def _furnish_bedroom(self) -> None:
        bed = self.against_wall(self.pick("bed", max_width=2.2, max_height=1.3), "bed")
        if bed is not None:
            for _ in range(int(self.rng.integers(1, 3))):
                self.pillow_on(bed, "head")
            for _ in range(2):
                if self.chance(0.75):
                    model = self.pick("nightstand") if self.chance(0.4) else proc.nightstand(self.rng)
                    stand = self.beside(model, "nightstand", bed)
                    if stand is not None:
                        if self.chance(0.7):
                            self.on(self.pick("lamp", max_height=0.6), "lamp", stand)
                        self.clutter(stand, ("book", "clock", "telephone", "bottle", "mug", "cup", "picture"),
                                     int(self.rng.integers(0, 3)))
            if self.chance(0.3):
                self.on(self.pick("backpack") or self.pick("bag"), "backpack", bed, flatness=0.05)
        if self.chance(0.7):
            self.against_wall(self.pick("wardrobe"), "wardrobe")
        if self.chance(0.5):
            dresser = self.against_wall(self.pick("dresser"), "dresser")
            if dresser is not None:
                self.clutter(dresser, ("vase", "lamp", "box", "toy", "book", "bottle", "picture"),
                             int(self.rng.integers(1, 3)))
        if self.chance(0.4):
            self._desk_corner()
        self.pictures([bed], 0.6, int(self.rng.integers(0, 2)))
        self.curtains(0.8)
        self.radiator_under_window(0.4)
        if self.chance(0.3):
            shelf = self.against_wall(self.pick("bookshelf", max_height=2.0), "bookshelf")
            if shelf is not None and shelf.size[2] < 1.6:
                self.clutter(shelf, ("book", "toy", "plant", "box"), int(self.rng.integers(1, 3)))
        self.floor_extras({"plant": 0.4, "trash can": 0.3, "backpack": 0.4, "shoe": 0.4, "toy": 0.3, "box": 0.3,
                           "bag": 0.3, "chair": 0.25})

    def _desk_corner(self) -> Entity | None:
        desk = self.against_wall(self.pick("desk", max_width=2.0, max_height=1.1), "desk")
        if desk is None:
            return None
        chair = self.pick("chair", min_height=0.75, max_height=1.1)
        self.in_front_of(chair, "chair", desk, distance=(0.05, 0.3), facing=True)
        if self.chance(0.7):
            if self.chance(0.65):
                self.on(self.small_object("monitor"), "monitor", desk, align=True)
                self.on(proc.keyboard(self.rng), "keyboard", desk, align=True)
            else:
                self.on(self.pick("laptop"), "laptop", desk, align=True)
        if self.chance(0.5):
            self.on(self.pick("lamp", max_height=0.6), "lamp", desk)
        self.clutter(desk, ("mug", "bottle", "book", "telephone", "cup", "plant"), int(self.rng.integers(0, 3)))
        if self.chance(0.5):
            self.near(self.pick("trash can", max_height=0.6), "trash can", desk)
        return desk

    def _furnish_office(self) -> None:
        desks = [self._desk_corner() for _ in range(int(self.rng.integers(1, 3)))]
        if self.chance(0.8):
            self.against_wall(self.pick("bookshelf", max_height=2.2), "bookshelf")
        if self.chance(0.5):
            cab = self.against_wall(self.pick("cabinet", wall_mounted=False, max_height=1.4), "cabinet")
            if cab is not None:
                self.clutter(cab, ("plant", "box", "book", "coffee maker", "fan"), int(self.rng.integers(1, 3)))
        if self.chance(0.3):
            self.against_wall(self.pick("whiteboard"), "whiteboard")
        if self.chance(0.3):
            table = self.in_middle(self.pick("table", min_height=0.65, max_width=2.0), "table")
            if table is not None:
                self.around_table(table, int(self.rng.integers(2, 5)))
                self.clutter(table, ("mug", "bottle", "laptop", "book", "cup"), int(self.rng.integers(0, 3)))
        self.pictures([d for d in desks if d is not None], 0.4, int(self.rng.integers(0, 2)))
        self.curtains(0.5)
        self.radiator_under_window(0.4)
        if self.chance(0.3):
            self.wall_item("clock", (1.6, 1.9), wall_mounted=True)
        self.floor_extras({"plant": 0.6, "trash can": 0.5, "backpack": 0.4, "box": 0.3, "bag": 0.2, "fan": 0.15})

    def _furnish_kitchen(self) -> None:
        H = self.size[2]
        # Counter run: procedural base cabinets with a counter top, against one wall.
        wall = self.walls[int(self.rng.integers(4))]
        length = float(min(self.rng.uniform(1.4, 3.2), wall.length - 0.3))
        depth, height = float(self.rng.uniform(0.55, 0.65)), float(self.rng.uniform(0.84, 0.9))
        counter = None
        cabinet = self.against_wall(proc.base_cabinet(self.rng, length, depth, height), "cabinet", walls=[wall.index],
                                    gap=(0.0, 0.01))
        if cabinet is not None:
            shift = rotation_z(cabinet.yaw)[:2, :2] @ np.array([0.0, -0.015])  # overhang at the front
            position = (cabinet.position[0] + shift[0], cabinet.position[1] + shift[1], height)
            top = self._proc_entity("counter", proc.counter_top(self.rng, length + 0.02, depth + 0.03),
                                    position, cabinet.yaw, "on")
            top.support, top.wall = cabinet.id, cabinet.wall
            if self.free(top.box, ignore=(cabinet.id,)):
                counter = self._commit(top)
            if counter is not None:
                self.clutter(counter, ("microwave", "coffee maker", "bottle", "bowl", "mug", "cup", "plant"),
                             int(self.rng.integers(2, 5)))
                # Upper cabinets above the counter.
                for _ in range(int(self.rng.integers(0, 3))):
                    model = self.pick("cabinet", wall_mounted=True)
                    if model is not None:
                        s_c = float(np.dot(np.asarray(cabinet.position[:2]) - wall.origin, wall.direction))
                        self.against_wall(model, "cabinet", walls=[wall.index], gap=(0.0, 0.01),
                                          elevation=float(self.rng.uniform(1.4, min(1.6, H - 0.85))),
                                          s_range=(s_c - length / 2, s_c + length / 2))
        if self.chance(0.6):
            self.against_wall(self.pick("sink", wall_mounted=False, max_height=1.3, min_height=0.7), "sink")
        if self.chance(0.7):
            self.against_wall(self.pick("stove", min_height=0.5, max_height=1.3), "stove")
        if self.chance(0.9):
            self.against_wall(self.pick("refrigerator", max_height=H - 0.15), "refrigerator")
        if self.chance(0.7):
            table = self.in_middle(self.pick("table", min_height=0.65, max_width=1.8), "table", margin=0.7)
            if table is not None:
                self.around_table(table, int(self.rng.integers(2, 5)))
                self.clutter(table, ("mug", "bottle", "bowl", "vase", "cup"), int(self.rng.integers(1, 4)))
        elif self.chance(0.4):
            self.in_middle(self.pick("counter"), "counter", margin=0.8)
        if self.chance(0.3):
            self.against_wall(self.pick("washing machine"), "washing machine")
        self.curtains(0.5)
        self.radiator_under_window(0.3)
        if self.chance(0.4):
            self.wall_item("clock", (1.6, 1.9), wall_mounted=True)
        self.pictures([], 0.0, int(self.chance(0.3)))
        self.floor_extras({"trash can": 0.7, "plant": 0.3, "box": 0.2, "bag": 0.15})

    def _furnish_bathroom(self) -> None:
        if self.chance(0.85):
            tub = self.against_wall(self.pick("bathtub", max_width=self.size[0] - 0.2), "bathtub", corner=True)
            if tub is not None and self.chance(0.8):
                self._shower_curtain(tub)
        self.against_wall(self.pick("toilet"), "toilet")
        model = self.pick("sink", max_width=1.2)
        if model is not None:
            elevation = model.entry.elevation_cm / 100.0
            self.against_wall(model, "sink", elevation=elevation, mount="wall" if elevation > 0 else "floor")
        for _ in range(int(self.rng.integers(1, 3))):
            model = self.pick("towel")
            if model is not None:
                self.against_wall(model, "towel", elevation=float(self.rng.uniform(0.7, 1.1)), gap=(0.01, 0.03))
        if self.chance(0.5):
            cab = self.against_wall(self.pick("cabinet", wall_mounted=False, max_height=1.0), "cabinet")
            if cab is not None:
                self.clutter(cab, ("bottle", "cup", "box", "vase"), int(self.rng.integers(1, 3)))
        self.curtains(0.4)
        self.radiator_under_window(0.5)
        if self.chance(0.3):
            self.wall_item("radiator", (0.1, 0.3))
        self.pictures([], 0.0, int(self.chance(0.3)))
        self.floor_extras({"trash can": 0.6, "washing machine": 0.25, "plant": 0.2})

    def _shower_curtain(self, tub: Entity) -> None:
        # Hung along the tub's open long side, from a rod near the ceiling down to just above the rim.
        fwd = rotation_z(tub.yaw)[:2, :2] @ np.array([0.0, -1.0])
        top = min(self.size[2] - 0.15, 2.05)
        bottom = tub.box.hi[2] + 0.05
        if top - bottom < 0.8:
            return
        built = proc.shower_curtain(self.rng, tub.size[0] * 0.95, top, bottom)
        d = built[1][1]
        xy = np.asarray(tub.position[:2]) + fwd * (tub.size[1] / 2 - d / 2 - 0.02)
        e = self._proc_entity("shower curtain", built, (float(xy[0]), float(xy[1]), bottom), tub.yaw, "wall")
        e.wall = tub.wall
        e.support = self.wall_entity[tub.wall] if tub.wall is not None else None
        if self.free(e.box, ignore=(tub.id,)) and e.box.lo[2] >= tub.box.hi[2]:
            self._commit(e)


def generate_scene(library: ModelLibrary, rng: np.random.Generator, room_type: str | None = None) -> Scene:
    """One furnished room."""
    return RoomBuilder(library, rng, room_type).build()
