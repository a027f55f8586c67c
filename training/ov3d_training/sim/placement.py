"""Putting entities down in a room without interpenetration.

:class:`Room` owns a room's free space (the entities placed so far and the zones kept clear) and
the placements recipes use: against a wall, in the middle, in front of / beside / near / above
another entity, around a table, on a surface. Each is rejection sampling: a probe entity is posed
by the placement's rule and kept only where its box stays in the room, overlaps no other entity's
box and stays out of the keep-out zones (a door's swing, the space in front of windows). Furniture
turns by multiples of 90 degrees, so its boxes are tight; small things turn freely and their
boxes are conservative. Things put *on* a support are dropped onto the support's actual mesh by
vertical ray casts over their footprint, and kept only where the surface under them is flat. A
placement returns the entity it kept, or None when no try fitted (or when there was nothing to
place: recipes pass ``pick``'s None straight through).
"""

from __future__ import annotations

import math

import numpy as np

from .entities import Built, catalog_entity, procedural_entity
from .geometry import Box, Footprint, raycast_down, rotation_z
from .library import Model, ModelLibrary
from .scene import Entity, Opening, Scene, Wall

# A thing to place: a catalogue model or a procedural build.
Source = Model | Built


class Room:
    """A room being furnished: its shell, the entities placed so far, and the space kept clear.

    All randomness comes from ``rng`` in the order the calls are made; same stream, same room.
    """

    def __init__(
        self, library: ModelLibrary, rng: np.random.Generator, size: tuple[float, float, float], walls: list[Wall]
    ):
        self.library = library
        self.rng = rng
        self.size = size
        self.walls = walls
        self.entities: list[Entity] = []
        self.openings: list[Opening] = []
        self.keep_out: list[Box] = []  # zones no entity may enter
        self.wall_entity: dict[int, int] = {}  # wall index -> entity id
        self._support_triangles: dict[int, np.ndarray] = {}

    def scene(self, room_type: str) -> Scene:
        return Scene(room_type, self.size, self.walls, self.entities, self.openings, self.wall_entity)

    # ------------------------------------------------------------------------------ bookkeeping
    def new_id(self) -> int:
        """The id the next added entity gets (ids are 1-based positions in :attr:`entities`)."""
        return len(self.entities) + 1

    def add(self, entity: Entity) -> Entity:
        assert entity.id == len(self.entities) + 1
        self.entities.append(entity)
        return entity

    def free(self, box: Box, ignore: tuple[int, ...] = (), margin: float = 0.0) -> bool:
        """Whether ``box`` is inside the room, clear of every placed entity (but the structure and
        ``ignore``) by ``margin``, and out of the keep-out zones."""
        if not self._inside(box):
            return False
        for e in self.entities:
            if e.mount == "structure" or e.id in ignore:
                continue
            if box.intersects(e.box, margin):
                return False
        return not any(box.intersects(k) for k in self.keep_out)

    def _inside(self, box: Box) -> bool:
        W, L, H = self.size
        return (
            box.lo[0] >= -1e-6
            and box.lo[1] >= -1e-6
            and box.hi[0] <= W + 1e-6
            and box.hi[1] <= L + 1e-6
            and box.hi[2] <= H - 0.02
        )

    # ------------------------------------------------------------------------------ drawing
    def pick(self, cls: str, **filters) -> Model | None:
        """A random catalogue model of ``cls`` (see :meth:`ModelLibrary.pick`), or None."""
        return self.library.pick(self.rng, cls, **filters)

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def _probe(self, source: Source, category: str, yaw: float, mount: str) -> Entity:
        """An entity of ``source`` at the origin, to be posed and tested. A catalogue model's scale
        is drawn here, once per try, so the box tested is the box kept."""
        if isinstance(source, Model):
            return catalog_entity(self.rng, self.new_id(), source, source.entry.size_m, (0.0, 0.0, 0.0), yaw, mount)
        return procedural_entity(self.new_id(), category, source, (0.0, 0.0, 0.0), yaw, mount)

    # ------------------------------------------------------------------------------ placements
    def against_wall(
        self,
        source: Source | None,
        category: str,
        *,
        walls=None,
        corner: bool = False,
        elevation: float = 0.0,
        gap: tuple[float, float] = (0.01, 0.05),
        tries: int = 40,
        mount: str | None = None,
        s_range: tuple[float, float] | None = None,
    ) -> Entity | None:
        """Back against a wall (``elevation`` > 0: hung on it), optionally in a corner or within
        ``s_range`` along the wall."""
        if source is None:
            return None
        mount = mount or ("wall" if elevation > 0 else "floor")
        for _ in range(tries):
            wall = self.walls[int(self.rng.choice(walls if walls is not None else range(4)))]
            probe = self._probe(source, category, wall.yaw, mount)
            w, d, _ = probe.size
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
                return self.add(probe)
        return None

    def in_middle(self, source: Source | None, category: str, *, margin: float = 0.6, tries: int = 40) -> Entity | None:
        """On the floor at least ``margin`` from every wall, turned by a multiple of 90 degrees."""
        if source is None:
            return None
        W, L, _ = self.size
        for _ in range(tries):
            yaw = float(self.rng.integers(4)) * math.pi / 2
            probe = self._probe(source, category, yaw, "floor")
            b = Box.from_pose(probe.size, (0.0, 0.0, 0.0), yaw)
            hx, hy = b.size[0] / 2, b.size[1] / 2
            if W - 2 * (margin + hx) <= 0 or L - 2 * (margin + hy) <= 0:
                continue
            x = float(self.rng.uniform(margin + hx, W - margin - hx))
            y = float(self.rng.uniform(margin + hy, L - margin - hy))
            probe.position = (x, y, 0.0)
            if self.free(probe.box, margin=0.05):
                return self.add(probe)
        return None

    def in_front_of(
        self,
        source: Source | None,
        category: str,
        anchor: Entity | None,
        *,
        distance=(0.3, 0.6),
        facing: bool = True,
        tries: int = 20,
        tuck: float = 0.0,
    ) -> Entity | None:
        """In front of ``anchor`` (its -y side), facing it (chairs) or facing away with it (coffee tables)."""
        if source is None or anchor is None:
            return None
        fwd = rotation_z(anchor.yaw)[:2, :2] @ np.array([0.0, -1.0])
        side = np.array([-fwd[1], fwd[0]])
        for _ in range(tries):
            yaw = anchor.yaw + (math.pi if facing else 0.0)
            probe = self._probe(source, category, yaw, "floor")
            d = probe.size[1]
            dist = anchor.size[1] / 2 + float(self.rng.uniform(*distance)) + d / 2 - tuck
            lateral = float(self.rng.uniform(-0.25, 0.25)) * max(anchor.size[0] - probe.size[0], 0.0)
            xy = np.asarray(anchor.position[:2]) + fwd * dist + side * lateral
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            if self.free(probe.box):
                return self.add(probe)
        return None

    def around_table(self, table: Entity, n: int) -> list[Entity]:
        """Up to ``n`` chairs of one model on the table's sides, facing it."""
        chairs = []
        sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
        order = self.rng.permutation(4)
        model = self.pick("chair", max_height=1.05, min_height=0.75)
        for k in order:
            if len(chairs) >= n or model is None:
                break
            sx, sy = sides[k]
            local_dir = np.array([sx, sy], dtype=float)
            world_dir = rotation_z(table.yaw)[:2, :2] @ local_dir
            # a chair's front (-y) must face the table: its yaw turns -y into -world_dir
            yaw = math.atan2(-world_dir[0], world_dir[1])
            probe = self._probe(model, "chair", yaw, "floor")
            half_table = table.size[1] / 2 if sy else table.size[0] / 2
            dist = half_table + probe.size[1] / 2 + float(self.rng.uniform(0.03, 0.15))
            xy = np.asarray(table.position[:2]) + world_dir * dist
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            if self.free(probe.box):
                chairs.append(self.add(probe))
        return chairs

    def beside(
        self, source: Source | None, category: str, anchor: Entity | None, *, gap=(0.02, 0.15), tries: int = 12
    ) -> Entity | None:
        """Left or right of ``anchor`` along its wall (nightstands by a bed, a lamp by a sofa)."""
        if source is None or anchor is None:
            return None
        rot = rotation_z(anchor.yaw)[:2, :2]
        for _ in range(tries):
            probe = self._probe(source, category, anchor.yaw, "floor")
            side = 1.0 if self.rng.random() < 0.5 else -1.0
            along = anchor.size[0] / 2 + float(self.rng.uniform(*gap)) + probe.size[0] / 2
            back = anchor.size[1] / 2 - probe.size[1] / 2  # align the backs (both against the wall)
            xy = np.asarray(anchor.position[:2]) + rot @ np.array([side * along, back])
            probe.position = (float(xy[0]), float(xy[1]), 0.0)
            probe.wall = anchor.wall
            if self.free(probe.box):
                return self.add(probe)
        return None

    def on(
        self,
        source: Source | None,
        category: str,
        support: Entity | None,
        *,
        align: bool = False,
        region: str = "any",
        flatness: float = 0.012,
        tries: int = 25,
    ) -> Entity | None:
        """Rest on ``support``'s mesh: rays over the footprint must all hit a patch flat within
        ``flatness``. ``align``: turned with the support (things that face the room); ``region``:
        "head" (a bed's pillow end), "back" (a sofa seat, against the backrest) or "any"."""
        if source is None or support is None:
            return None
        tri = self._triangles(support)
        sw, sd, sh = support.size
        rot = rotation_z(support.yaw)[:2, :2]
        for _ in range(tries):
            turn = float(self.rng.normal(0, 0.08)) if align else float(self.rng.uniform(-math.pi, math.pi))
            yaw = support.yaw + turn
            probe = self._probe(source, category, yaw, "on")
            w, d, _ = probe.size
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
            # every ray must hit, level, and not at the support's foot (rays through an open frame hit its base)
            if np.isnan(z).any() or z.max() - z.min() > flatness or z.max() < support.position[2] + 0.05 * sh:
                continue
            probe.position = (float(xy[0]), float(xy[1]), float(z.max()) + 0.002)
            probe.support = support.id
            if self.free(probe.box, ignore=(support.id,)):
                return self.add(probe)
        return None

    def _triangles(self, support: Entity) -> np.ndarray:
        """``support``'s world triangles, computed once per support (its pose never changes)."""
        tri = self._support_triangles.get(support.id)
        if tri is None:
            tri = self._support_triangles[support.id] = support.world_triangles()
        return tri

    def above(
        self, source: Source | None, category: str, anchor: Entity | None, *, gap=(0.15, 0.45), tries: int = 12
    ) -> Entity | None:
        """Hung on the wall behind ``anchor`` (a picture over a sofa)."""
        if source is None or anchor is None or anchor.wall is None:
            return None
        wall = self.walls[anchor.wall]
        s_anchor = wall.along(anchor.position)
        for _ in range(tries):
            probe = self._probe(source, category, wall.yaw, "wall")
            _, d, h = probe.size
            z = anchor.box.hi[2] + float(self.rng.uniform(*gap))
            if z + h > self.size[2] - 0.1:
                continue
            s = s_anchor + float(self.rng.uniform(-0.15, 0.15)) * anchor.size[0]
            xy = wall.point(s, 0.005 + d / 2)
            probe.position = (float(xy[0]), float(xy[1]), float(z))
            probe.wall, probe.support = wall.index, self.wall_entity[wall.index]
            if self.free(probe.box):
                return self.add(probe)
        return None

    def near(
        self, source: Source | None, category: str, anchor: Entity | None, *, gap=(0.05, 0.3), tries: int = 20
    ) -> Entity | None:
        """On the floor within ``gap`` of ``anchor``'s footprint (a bin by a desk)."""
        if source is None or anchor is None:
            return None
        b = anchor.box
        for _ in range(tries):
            # plants and bins are round enough to turn freely; the rest turn by multiples of 90 degrees
            yaw = (
                float(self.rng.integers(4)) * math.pi / 2
                if category not in ("plant", "trash can")
                else float(self.rng.uniform(-math.pi, math.pi))
            )
            probe = self._probe(source, category, yaw, "floor")
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
                return self.add(probe)
        return None
