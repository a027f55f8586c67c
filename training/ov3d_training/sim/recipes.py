"""What each room type contains: one recipe per room type, in the order its things are put down.

A recipe names the room's size ranges and window counts (for :mod:`.shell`) and a furnishing
function that places things with :class:`~.placement.Room` and the shared steps of
:mod:`.furnishing`. Every step draws from the room's one random stream, so reordering steps, or
adding one, changes every room drawn after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import procedural as proc
from .entities import procedural_entity
from .furnishing import (
    clutter,
    curtains,
    floor_extras,
    pictures,
    pillow_on,
    radiator_under_window,
    small_object,
    wall_item,
)
from .geometry import rotation_z
from .placement import Room
from .scene import Entity


@dataclass(frozen=True)
class Recipe:
    """A room type: the ranges its size is drawn from, how many windows it gets, how it is furnished."""

    width: tuple[float, float]  # metres, the range the room's width is drawn from
    length: tuple[float, float]
    window_counts: tuple[int, ...]  # drawn uniformly; a repeated count is likelier
    furnish: Callable[[Room], None]


def furnish_living_room(room: Room) -> None:
    """A sofa with pillows, a coffee table in front and maybe a lamp beside it; loose chairs, a TV,
    shelves and cabinets with things on them, maybe a piano; pictures, curtains, odds and ends."""
    sofa = room.against_wall(room.pick("sofa", max_width=3.0), "sofa")
    if sofa is not None:
        for _ in range(1 + int(room.chance(0.6))):
            pillow_on(room, sofa, "back")
        table = room.in_front_of(
            room.pick("table", max_height=0.55, max_width=1.5), "table", sofa, distance=(0.35, 0.55), facing=False
        )
        if table is not None:
            clutter(
                room, table, ("mug", "book", "bowl", "vase", "telephone", "cup", "bottle"), int(room.rng.integers(1, 4))
            )
        if room.chance(0.5):
            room.beside(room.pick("lamp", min_height=1.0) or room.pick("plant", min_height=0.5), "lamp", sofa)
    if room.chance(0.5):
        for _ in range(int(room.rng.integers(1, 3))):
            room.in_middle(room.pick("chair", min_height=0.65, max_height=1.05), "chair", margin=0.5)
    r = room.rng.random()
    if r < 0.55:
        stand = room.against_wall(room.pick("other furniture", noun="tv stand"), "other furniture")
        if stand is not None:
            tv = room.on(room.pick("television", wall_mounted=False), "television", stand, align=True, flatness=0.02)
            if tv is None:  # no room on top: hang one above it
                room.above(room.pick("television", wall_mounted=True), "television", stand, gap=(0.1, 0.3))
    elif r < 0.85:
        wall_item(room, "television", (1.0, 1.3), wall_mounted=True)
    if room.chance(0.4):
        other = room.against_wall(
            room.pick("other furniture", max_height=0.8, min_height=0.35, max_depth=0.7), "other furniture"
        )
        if other is not None:
            clutter(room, other, ("vase", "lamp", "box", "plant", "clock", "speaker"), int(room.rng.integers(1, 3)))
    if room.chance(0.6):
        shelf = room.against_wall(room.pick("bookshelf", max_height=2.2), "bookshelf")
        if shelf is not None and shelf.size[2] < 1.6:
            clutter(room, shelf, ("vase", "plant", "book", "clock", "box"), int(room.rng.integers(1, 3)))
    if room.chance(0.3):
        cab = room.against_wall(room.pick("cabinet", wall_mounted=False, max_height=1.3), "cabinet")
        if cab is not None:
            clutter(room, cab, ("vase", "lamp", "plant", "book", "speaker", "picture"), int(room.rng.integers(1, 3)))
    if room.chance(0.12):
        room.against_wall(room.pick("piano"), "piano")
    pictures(room, [sofa], 0.7, int(room.rng.integers(0, 2)))
    curtains(room, 0.7)
    radiator_under_window(room, 0.4)
    if room.chance(0.25):
        wall_item(room, "clock", (1.5, 1.8), wall_mounted=True)
    floor_extras(
        room,
        {
            "plant": 0.8,
            "lamp": 0.3,
            "trash can": 0.2,
            "toy": 0.2,
            "backpack": 0.2,
            "speaker": 0.2,
            "box": 0.2,
            "shoe": 0.15,
        },
    )


def furnish_bedroom(room: Room) -> None:
    """A bed with pillows and nightstands beside it, a wardrobe, a dresser, maybe a desk corner and
    a bookshelf; pictures, curtains, odds and ends."""
    bed = room.against_wall(room.pick("bed", max_width=2.2, max_height=1.3), "bed")
    if bed is not None:
        for _ in range(int(room.rng.integers(1, 3))):
            pillow_on(room, bed, "head")
        for _ in range(2):
            if room.chance(0.75):
                model = room.pick("nightstand") if room.chance(0.4) else proc.nightstand(room.rng)
                stand = room.beside(model, "nightstand", bed)
                if stand is not None:
                    if room.chance(0.7):
                        room.on(room.pick("lamp", max_height=0.6), "lamp", stand)
                    clutter(
                        room,
                        stand,
                        ("book", "clock", "telephone", "bottle", "mug", "cup", "picture"),
                        int(room.rng.integers(0, 3)),
                    )
        if room.chance(0.3):
            room.on(room.pick("backpack") or room.pick("bag"), "backpack", bed, flatness=0.05)
    if room.chance(0.7):
        room.against_wall(room.pick("wardrobe"), "wardrobe")
    if room.chance(0.5):
        dresser = room.against_wall(room.pick("dresser"), "dresser")
        if dresser is not None:
            clutter(
                room, dresser, ("vase", "lamp", "box", "toy", "book", "bottle", "picture"), int(room.rng.integers(1, 3))
            )
    if room.chance(0.4):
        _desk_corner(room)
    pictures(room, [bed], 0.6, int(room.rng.integers(0, 2)))
    curtains(room, 0.8)
    radiator_under_window(room, 0.4)
    if room.chance(0.3):
        shelf = room.against_wall(room.pick("bookshelf", max_height=2.0), "bookshelf")
        if shelf is not None and shelf.size[2] < 1.6:
            clutter(room, shelf, ("book", "toy", "plant", "box"), int(room.rng.integers(1, 3)))
    floor_extras(
        room,
        {
            "plant": 0.4,
            "trash can": 0.3,
            "backpack": 0.4,
            "shoe": 0.4,
            "toy": 0.3,
            "box": 0.3,
            "bag": 0.3,
            "chair": 0.25,
        },
    )


def _desk_corner(room: Room) -> Entity | None:
    """A desk against a wall with a chair at it, a monitor and keyboard or a laptop, maybe a lamp and
    a bin; the desk, or None when none fitted."""
    desk = room.against_wall(room.pick("desk", max_width=2.0, max_height=1.1), "desk")
    if desk is None:
        return None
    chair = room.pick("chair", min_height=0.75, max_height=1.1)
    room.in_front_of(chair, "chair", desk, distance=(0.05, 0.3), facing=True)
    if room.chance(0.7):
        if room.chance(0.65):
            room.on(small_object(room, "monitor"), "monitor", desk, align=True)
            room.on(proc.keyboard(room.rng), "keyboard", desk, align=True)
        else:
            room.on(room.pick("laptop"), "laptop", desk, align=True)
    if room.chance(0.5):
        room.on(room.pick("lamp", max_height=0.6), "lamp", desk)
    clutter(room, desk, ("mug", "bottle", "book", "telephone", "cup", "plant"), int(room.rng.integers(0, 3)))
    if room.chance(0.5):
        room.near(room.pick("trash can", max_height=0.6), "trash can", desk)
    return desk


def furnish_office(room: Room) -> None:
    """One or two desk corners, a bookshelf, cabinets, maybe a whiteboard and a meeting table with
    chairs; pictures, curtains, odds and ends."""
    desks = [_desk_corner(room) for _ in range(int(room.rng.integers(1, 3)))]
    if room.chance(0.8):
        room.against_wall(room.pick("bookshelf", max_height=2.2), "bookshelf")
    if room.chance(0.5):
        cab = room.against_wall(room.pick("cabinet", wall_mounted=False, max_height=1.4), "cabinet")
        if cab is not None:
            clutter(room, cab, ("plant", "box", "book", "coffee maker", "fan"), int(room.rng.integers(1, 3)))
    if room.chance(0.3):
        room.against_wall(room.pick("whiteboard"), "whiteboard")
    if room.chance(0.3):
        table = room.in_middle(room.pick("table", min_height=0.65, max_width=2.0), "table")
        if table is not None:
            room.around_table(table, int(room.rng.integers(2, 5)))
            clutter(room, table, ("mug", "bottle", "laptop", "book", "cup"), int(room.rng.integers(0, 3)))
    pictures(room, [d for d in desks if d is not None], 0.4, int(room.rng.integers(0, 2)))
    curtains(room, 0.5)
    radiator_under_window(room, 0.4)
    if room.chance(0.3):
        wall_item(room, "clock", (1.6, 1.9), wall_mounted=True)
    floor_extras(room, {"plant": 0.6, "trash can": 0.5, "backpack": 0.4, "box": 0.3, "bag": 0.2, "fan": 0.15})


def furnish_kitchen(room: Room) -> None:
    """A counter run (base cabinets, a counter top with things on it, upper cabinets over it), sink,
    stove, refrigerator, a table with chairs or a free-standing counter; curtains, odds and ends."""
    H = room.size[2]
    # Counter run: procedural base cabinets with a counter top, against one wall.
    wall = room.walls[int(room.rng.integers(4))]
    length = float(min(room.rng.uniform(1.4, 3.2), wall.length - 0.3))
    depth, height = float(room.rng.uniform(0.55, 0.65)), float(room.rng.uniform(0.84, 0.9))
    counter = None
    cabinet = room.against_wall(
        proc.base_cabinet(room.rng, length, depth, height), "cabinet", walls=[wall.index], gap=(0.0, 0.01)
    )
    if cabinet is not None:
        shift = rotation_z(cabinet.yaw)[:2, :2] @ np.array([0.0, -0.015])  # overhang at the front
        position = (cabinet.position[0] + shift[0], cabinet.position[1] + shift[1], height)
        top = procedural_entity(
            room.new_id(),
            "counter",
            proc.counter_top(room.rng, length + 0.02, depth + 0.03),
            position,
            cabinet.yaw,
            "on",
        )
        top.support, top.wall = cabinet.id, cabinet.wall
        if room.free(top.box, ignore=(cabinet.id,)):
            counter = room.add(top)
        if counter is not None:
            clutter(
                room,
                counter,
                ("microwave", "coffee maker", "bottle", "bowl", "mug", "cup", "plant"),
                int(room.rng.integers(2, 5)),
            )
            # Upper cabinets above the counter.
            for _ in range(int(room.rng.integers(0, 3))):
                model = room.pick("cabinet", wall_mounted=True)
                if model is not None:
                    s_c = wall.along(cabinet.position)
                    room.against_wall(
                        model,
                        "cabinet",
                        walls=[wall.index],
                        gap=(0.0, 0.01),
                        elevation=float(room.rng.uniform(1.4, min(1.6, H - 0.85))),
                        s_range=(s_c - length / 2, s_c + length / 2),
                    )
    if room.chance(0.6):
        room.against_wall(room.pick("sink", wall_mounted=False, max_height=1.3, min_height=0.7), "sink")
    if room.chance(0.7):
        room.against_wall(room.pick("stove", min_height=0.5, max_height=1.3), "stove")
    if room.chance(0.9):
        room.against_wall(room.pick("refrigerator", max_height=H - 0.15), "refrigerator")
    if room.chance(0.7):
        table = room.in_middle(room.pick("table", min_height=0.65, max_width=1.8), "table", margin=0.7)
        if table is not None:
            room.around_table(table, int(room.rng.integers(2, 5)))
            clutter(room, table, ("mug", "bottle", "bowl", "vase", "cup"), int(room.rng.integers(1, 4)))
    elif room.chance(0.4):
        room.in_middle(room.pick("counter"), "counter", margin=0.8)
    if room.chance(0.3):
        room.against_wall(room.pick("washing machine"), "washing machine")
    curtains(room, 0.5)
    radiator_under_window(room, 0.3)
    if room.chance(0.4):
        wall_item(room, "clock", (1.6, 1.9), wall_mounted=True)
    pictures(room, [], 0.0, int(room.chance(0.3)))
    floor_extras(room, {"trash can": 0.7, "plant": 0.3, "box": 0.2, "bag": 0.15})


def furnish_bathroom(room: Room) -> None:
    """A bathtub in a corner with a shower curtain, a toilet, a sink, towels, maybe a cabinet and
    radiators; curtains, odds and ends."""
    if room.chance(0.85):
        tub = room.against_wall(room.pick("bathtub", max_width=room.size[0] - 0.2), "bathtub", corner=True)
        if tub is not None and room.chance(0.8):
            _shower_curtain(room, tub)
    room.against_wall(room.pick("toilet"), "toilet")
    model = room.pick("sink", max_width=1.2)
    if model is not None:
        elevation = model.entry.elevation_cm / 100.0
        room.against_wall(model, "sink", elevation=elevation, mount="wall" if elevation > 0 else "floor")
    for _ in range(int(room.rng.integers(1, 3))):
        model = room.pick("towel")
        if model is not None:
            room.against_wall(model, "towel", elevation=float(room.rng.uniform(0.7, 1.1)), gap=(0.01, 0.03))
    if room.chance(0.5):
        cab = room.against_wall(room.pick("cabinet", wall_mounted=False, max_height=1.0), "cabinet")
        if cab is not None:
            clutter(room, cab, ("bottle", "cup", "box", "vase"), int(room.rng.integers(1, 3)))
    curtains(room, 0.4)
    radiator_under_window(room, 0.5)
    if room.chance(0.3):
        wall_item(room, "radiator", (0.1, 0.3))
    pictures(room, [], 0.0, int(room.chance(0.3)))
    floor_extras(room, {"trash can": 0.6, "washing machine": 0.25, "plant": 0.2})


def _shower_curtain(room: Room, tub: Entity) -> None:
    """A curtain along the tub's open long side, from a rod near the ceiling down to just above the rim."""
    fwd = rotation_z(tub.yaw)[:2, :2] @ np.array([0.0, -1.0])
    top = min(room.size[2] - 0.15, 2.05)
    bottom = tub.box.hi[2] + 0.05
    if top - bottom < 0.8:
        return
    built = proc.shower_curtain(room.rng, tub.size[0] * 0.95, top, bottom)
    d = built[1][1]
    xy = np.asarray(tub.position[:2]) + fwd * (tub.size[1] / 2 - d / 2 - 0.02)
    e = procedural_entity(room.new_id(), "shower curtain", built, (float(xy[0]), float(xy[1]), bottom), tub.yaw, "wall")
    e.wall = tub.wall
    e.support = room.wall_entity[tub.wall] if tub.wall is not None else None
    if room.free(e.box, ignore=(tub.id,)) and e.box.lo[2] >= tub.box.hi[2]:
        room.add(e)


RECIPES = {
    "living room": Recipe((3.6, 6.5), (3.4, 6.0), (1, 1, 2, 2, 3), furnish_living_room),
    "bedroom": Recipe((3.0, 5.0), (3.0, 5.0), (1, 1, 2, 2, 3), furnish_bedroom),
    "kitchen": Recipe((2.8, 5.0), (2.8, 5.0), (1, 1, 2, 2, 3), furnish_kitchen),
    "office": Recipe((3.0, 5.5), (3.0, 5.0), (1, 1, 2, 2, 3), furnish_office),
    "bathroom": Recipe((2.2, 3.6), (2.2, 3.4), (0, 1, 1), furnish_bathroom),
}
# The order is part of the data set: scene i of a seed is the room type at (seed + i) % 5, and a
# room type drawn from the stream is an index into it.
ROOM_TYPES = tuple(RECIPES)
