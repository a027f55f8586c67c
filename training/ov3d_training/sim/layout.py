"""Draw one furnished room: the room type's recipe, its shell, then its furniture."""

from __future__ import annotations

import numpy as np

from .library import ModelLibrary
from .recipes import RECIPES, ROOM_TYPES
from .scene import Scene
from .shell import build_shell, draw_size


def generate_scene(library: ModelLibrary, rng: np.random.Generator, room_type: str | None = None) -> Scene:
    """One furnished room of ``room_type`` (None: drawn from ``rng``). All randomness comes from
    ``rng``; same stream, same room."""
    room_type = room_type or ROOM_TYPES[int(rng.integers(len(ROOM_TYPES)))]
    if room_type not in ROOM_TYPES:
        raise ValueError(f"room type must be one of {ROOM_TYPES}, got {room_type!r}")
    recipe = RECIPES[room_type]
    room = build_shell(library, rng, draw_size(rng, recipe.width, recipe.length), recipe.window_counts)
    recipe.furnish(room)
    return room.scene(room_type)
