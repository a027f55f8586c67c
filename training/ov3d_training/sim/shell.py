"""The room's shell: floor, ceiling, four walls, and the door and windows set into them.

Walls are slabs of thickness ``WALL_T`` outside the room (see :mod:`.scene`), cut into boxes around
the openings once the openings are placed. Door and window models sit in the wall's thickness at
their catalogue size; the door's swing and the space in front of windows are kept clear of
furniture.
"""

from __future__ import annotations

import numpy as np

from .colors import sample_color
from .entities import PROCEDURAL_ATTRIBUTION, catalog_entity
from .geometry import Box, RenderPart, box_area
from .library import Model, ModelLibrary
from .placement import Room
from .scene import WALL_T, Entity, Opening, Wall

HEIGHT = (2.4, 2.9)  # metres, any room type
WALL_COLORS = ("white", "beige", "grey", "white", "white", "yellow", "blue", "green")
FLOOR_COLORS = ("brown", "beige", "grey", "brown", "white", "black")
CEILING_RGB = (0.93, 0.93, 0.92)


def draw_size(
    rng: np.random.Generator, width: tuple[float, float], length: tuple[float, float]
) -> tuple[float, float, float]:
    """(W, L, H) in metres, to the centimetre: W and L from a recipe's ranges, H from :data:`HEIGHT`."""
    return (
        round(float(rng.uniform(*width)), 2),
        round(float(rng.uniform(*length)), 2),
        round(float(rng.uniform(*HEIGHT)), 2),
    )


def build_shell(
    library: ModelLibrary, rng: np.random.Generator, size: tuple[float, float, float], window_counts: tuple[int, ...]
) -> Room:
    """An empty room of ``size``: floor, ceiling, walls, one door and a number of windows drawn
    from ``window_counts``; ready to furnish."""
    room = Room(library, rng, size, _walls(size))
    W, L, H = size
    _, wall_rgb = sample_color(rng, WALL_COLORS)
    _, floor_rgb = sample_color(rng, FLOOR_COLORS)
    _add_structure(room, "floor", Box((-WALL_T, -WALL_T, -0.05), (W + WALL_T, L + WALL_T, 0.0)), floor_rgb)
    _add_structure(room, "ceiling", Box((-WALL_T, -WALL_T, H), (W + WALL_T, L + WALL_T, H + 0.05)), CEILING_RGB)
    for wall in room.walls:
        e = _add_structure(room, "wall", _wall_piece(wall, *_wall_span(wall), 0.0, H), wall_rgb)
        e.wall = wall.index
        room.wall_entity[wall.index] = e.id
    _add_door(room)
    _add_windows(room, window_counts)
    # Wall slabs are cut only now that the openings are known.
    for wall in room.walls:
        room.entities[room.wall_entity[wall.index] - 1].parts = _wall_parts(wall, H, room.openings, wall_rgb)
    return room


def _walls(size: tuple[float, float, float]) -> list[Wall]:
    W, L, _ = size
    specs = [
        ((0, 0), (1, 0), (0, 1), W),
        ((W, 0), (0, 1), (-1, 0), L),
        ((W, L), (-1, 0), (0, -1), W),
        ((0, L), (0, -1), (1, 0), L),
    ]
    return [
        Wall(i, np.array(o, float), np.array(d, float), np.array(n, float), float(ln))
        for i, (o, d, n, ln) in enumerate(specs)
    ]


def _box_part(box: Box, rgb) -> RenderPart:
    half = tuple(float(v) for v in box.size / 2)
    return RenderPart(
        kind="box", rgb=tuple(rgb), area=box_area(half), half_extents=half, offset=tuple(float(v) for v in box.center)
    )


def _add_structure(room: Room, category: str, box: Box, rgb) -> Entity:
    return room.add(
        Entity(
            room.new_id(),
            category,
            category,
            [_box_part(box, rgb)],
            tuple(float(v) for v in box.size),
            (0.0, 0.0, 0.0),
            0.0,
            "structure",
            source="procedural",
            attribution=dict(PROCEDURAL_ATTRIBUTION),
            box_override=box,
        )
    )


def _wall_span(wall: Wall) -> tuple[float, float]:
    # South and north walls cover the corners.
    return (-WALL_T, wall.length + WALL_T) if wall.index in (0, 2) else (0.0, wall.length)


def _wall_piece(wall: Wall, s0: float, s1: float, z0: float, z1: float) -> Box:
    """The box of the wall's slab from ``s0`` to ``s1`` along it and ``z0`` to ``z1`` up."""
    a = wall.point(s0, -WALL_T)
    b = wall.point(s1, 0.0)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    return Box((lo[0], lo[1], z0), (hi[0], hi[1], z1))


def _wall_parts(wall: Wall, height: float, openings: list[Opening], rgb) -> list[RenderPart]:
    """The wall's slab as boxes around its openings: full-height pieces between them, and the
    pieces below and above each one."""
    s_lo, s_hi = _wall_span(wall)
    cuts = sorted((o for o in openings if o.wall == wall.index), key=lambda o: o.s)
    pieces = []
    cursor = s_lo
    for o in cuts:
        a, b = o.s - o.width / 2, o.s + o.width / 2
        if a > cursor + 1e-4:
            pieces.append((cursor, a, 0.0, height))
        if o.bottom > 1e-3:
            pieces.append((a, b, 0.0, o.bottom))
        if o.bottom + o.height < height - 1e-3:
            pieces.append((a, b, o.bottom + o.height, height))
        cursor = b
    if s_hi > cursor + 1e-4:
        pieces.append((cursor, s_hi, 0.0, height))
    return [_box_part(_wall_piece(wall, s0, s1, z0, z1), rgb) for s0, s1, z0, z1 in pieces]


def _add_door(room: Room) -> None:
    wall = int(room.rng.integers(4))
    door = room.pick("door", max_width=min(1.1, room.walls[wall].length - 0.8), max_height=room.size[2] - 0.1)
    if door is not None:
        _add_opening(room, door, wall, "door", bottom=0.0)


def _add_windows(room: Room, window_counts: tuple[int, ...]) -> None:
    H = room.size[2]
    for _ in range(int(room.rng.choice(window_counts))):
        wall = int(room.rng.integers(4))
        model = room.pick("window", max_width=room.walls[wall].length - 0.8)
        if model is None:
            continue
        h = model.entry.size_m[2]
        bottom = model.entry.elevation_cm / 100.0
        if bottom < 0.3 and h < 1.6:  # catalogue windows without a sill height: a typical one
            bottom = float(room.rng.uniform(0.8, 1.0))
        if bottom + h > H - 0.1:
            continue
        _add_opening(room, model, wall, "window", bottom=bottom)


def _add_opening(room: Room, model: Model, wall_index: int, kind: str, bottom: float) -> None:
    """Set ``model`` into the wall at a random spot clear of the wall's ends and other openings
    (nothing when none is found in a few tries), and keep the space in front of it clear."""
    wall = room.walls[wall_index]
    w, d, h = model.entry.size_m
    if wall.length <= w + 0.7:
        return
    for _ in range(20):
        s = float(room.rng.uniform(0.35 + w / 2, wall.length - 0.35 - w / 2))
        clash = any(o.wall == wall_index and abs(o.s - s) < (o.width + w) / 2 + 0.3 for o in room.openings)
        if not clash:
            break
    else:
        return
    eid = room.new_id()
    xy = wall.point(s, -WALL_T / 2)
    entity = catalog_entity(
        room.rng, eid, model, (w, d, h), (float(xy[0]), float(xy[1]), bottom), wall.yaw, "opening", scale_jitter=False
    )
    entity.wall = wall_index
    entity.support = room.wall_entity[wall_index]
    # Glass panes are dropped: a depth sensor mostly sees through them.
    kept = [p for p in entity.parts if not p.transparent]
    entity.parts = kept or entity.parts
    room.add(entity)
    room.openings.append(Opening(eid, wall_index, s, w, bottom, h, kind))
    # Keep the door's swing and the space in front of windows clear.
    reach = w + 0.1 if kind == "door" else 0.35
    a = wall.point(s - w / 2 - 0.05, 0.0)
    b = wall.point(s + w / 2 + 0.05, reach)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    top = room.size[2] if kind == "door" else bottom + h
    room.keep_out.append(Box((lo[0], lo[1], bottom), (hi[0], hi[1], top)))
