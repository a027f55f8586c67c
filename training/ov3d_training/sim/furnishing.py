"""Furnishing steps several room recipes share: small things on surfaces, pillows, curtains beside
windows, pictures, things hung on walls, radiators under windows, floor-standing odds and ends."""

from __future__ import annotations

from . import procedural as proc
from .entities import Built, procedural_entity
from .library import Model
from .placement import Room
from .scene import Entity

# Small things the catalogue has few of (or none): built procedurally when it has none, and
# often even when it has some, for variety.
_BUILDERS = {"book": proc.book, "keyboard": proc.keyboard, "pillow": proc.pillow}


def small_object(room: Room, cls: str) -> Model | Built | None:
    """Something of ``cls`` small enough to stand on a table or shelf."""
    if cls in _BUILDERS and (not room.library.candidates(cls) or room.chance(0.6)):
        return _BUILDERS[cls](room.rng)
    if cls == "monitor" and room.chance(0.75):
        return proc.monitor(room.rng)
    return room.pick(cls, max_height=0.6, max_width=0.7, wall_mounted=False)


def pillow_on(room: Room, support: Entity, region: str) -> Entity | None:
    """A pillow at a bed's head or against a sofa's back; anywhere flat on it when that end is
    taken (many catalogue beds come with their own pillows modelled in)."""
    pillow = proc.pillow(room.rng)
    return room.on(pillow, "pillow", support, align=True, region=region, flatness=0.05) or room.on(
        pillow, "pillow", support, align=True, flatness=0.05
    )


def clutter(room: Room, support: Entity, classes: tuple[str, ...], n: int) -> None:
    """``n`` tries at putting a random one of ``classes`` on ``support``."""
    for _ in range(n):
        cls = classes[int(room.rng.integers(len(classes)))]
        align = cls in ("monitor", "keyboard", "laptop", "television", "picture")  # they face the room
        room.on(small_object(room, cls), cls, support, align=align)


def curtains(room: Room, p: float) -> None:
    """With probability ``p`` per window, a curtain on each side of it (sometimes on one side only)."""
    for o in list(room.openings):
        if o.kind != "window" or not room.chance(p):
            continue
        wall = room.walls[o.wall]
        height = room.size[2] - 0.05 - float(room.rng.uniform(0.0, 0.1))
        for side in (-1, 1):
            if side == 1 and room.chance(0.25):
                continue
            built = proc.curtain(room.rng, height)
            w, d, _ = built[1]
            # just outside the window's keep-out zone (its width + 5 cm each side)
            s = o.s + side * (o.width / 2 + w / 2 + 0.06)
            if s - w / 2 < 0 or s + w / 2 > wall.length:
                continue
            xy = wall.point(s, 0.03 + d / 2)
            e = procedural_entity(room.new_id(), "curtain", built, (float(xy[0]), float(xy[1]), 0.02), wall.yaw, "wall")
            e.wall, e.support = wall.index, room.wall_entity[wall.index]
            if room.free(e.box):
                room.add(e)


def pictures(room: Room, anchors: list[Entity], p_above: float, n_free: int) -> None:
    """A picture above each anchor with probability ``p_above``, and ``n_free`` more anywhere on the walls."""
    for a in anchors:
        if a is not None and a.wall is not None and room.chance(p_above):
            room.above(proc.picture(room.rng, room.library.paintings), "picture", a)
    for _ in range(n_free):
        room.against_wall(
            proc.picture(room.rng, room.library.paintings),
            "picture",
            elevation=float(room.rng.uniform(1.2, 1.6)),
            gap=(0.005, 0.01),
        )


def wall_item(room: Room, cls: str, elevation: tuple[float, float], **filters) -> Entity | None:
    """A catalogue ``cls`` hung on a wall at a height drawn from ``elevation``."""
    model = room.pick(cls, **filters)
    if model is None:
        return None
    return room.against_wall(model, cls, elevation=float(room.rng.uniform(*elevation)), gap=(0.005, 0.02))


def floor_extras(room: Room, spec: dict[str, float]) -> None:
    """Floor-standing odds and ends: class -> probability; corners for plants, bins and lamps."""
    for cls, p in spec.items():
        if not room.chance(p):
            continue
        if cls == "plant":
            model = room.pick("plant", min_height=0.5)
        elif cls == "lamp":
            model = room.pick("lamp", min_height=1.0)
        else:
            model = room.pick(cls, max_height=1.3, wall_mounted=False)
        corner = cls in ("plant", "trash can", "lamp") and room.chance(0.6)
        room.against_wall(model, cls, corner=corner)


def radiator_under_window(room: Room, p: float) -> None:
    """With probability ``p`` per window with a sill high enough, a radiator under it."""
    for o in room.openings:
        if o.kind == "window" and o.bottom > 0.5 and room.chance(p):
            model = room.pick("radiator", max_height=o.bottom - 0.15, max_width=o.width)
            if model is not None:
                room.against_wall(
                    model, "radiator", walls=[o.wall], elevation=0.12, gap=(0.03, 0.06), s_range=(o.s - 0.1, o.s + 0.1)
                )
