"""Turn a catalogue model or a procedural build into an :class:`~.scene.Entity`.

Placed catalogue models get a small random scale and, with a class-dependent probability, a random
named colour on their main material, so one model does not always look the same. The material
word captions use ("wooden", "glass", ...) is read from the catalogue name.
"""

from __future__ import annotations

import numpy as np

from .colors import color_name, sample_color
from .geometry import RenderPart
from .library import Model
from .scene import Entity

# What a builder in :mod:`.procedural` returns: render parts, (width, depth, height), noun.
Built = tuple[list[RenderPart], tuple[float, float, float], str]

PROCEDURAL_ATTRIBUTION = {"source": "procedural (ov3d_ros simulator)", "license": "Apache-2.0"}

# Probability that a catalogue model gets a random named colour on its main material.
RECOLOR = {
    "chair": 0.5,
    "sofa": 0.6,
    "bed": 0.4,
    "cabinet": 0.4,
    "table": 0.3,
    "desk": 0.3,
    "bookshelf": 0.3,
    "mug": 0.8,
    "cup": 0.2,
    "bottle": 0.5,
    "backpack": 0.9,
    "bag": 0.6,
    "box": 0.3,
    "trash can": 0.7,
    "lamp": 0.5,
    "vase": 0.7,
    "toilet": 0.2,
    "sink": 0.2,
    "bathtub": 0.2,
    "dresser": 0.4,
    "nightstand": 0.4,
    "wardrobe": 0.4,
    "other furniture": 0.4,
    "towel": 0.9,
    "shoe": 0.6,
    "toy": 0.3,
    "laptop": 0.3,
    "refrigerator": 0.3,
    "washing machine": 0.2,
    "door": 0.3,
    "speaker": 0.3,
    "telephone": 0.4,
    "fan": 0.5,
    "bowl": 0.6,
    "clock": 0.4,
    "coffee maker": 0.4,
    "microwave": 0.3,
    "stove": 0.2,
    "radiator": 0.2,
}
MATERIAL_WORDS = (
    ("wooden", ("wood", "wooden", "oak", "teak", "alder")),
    ("glass", ("glass",)),
    ("metal", ("iron", "metal")),
    ("rattan", ("rattan",)),
    ("plastic", ("plastic",)),
)


def material_word(name: str) -> str | None:
    """The material a catalogue name states ("Oak table" -> "wooden"), or None."""
    words = name.lower().replace("-", " ").split()
    for material, keys in MATERIAL_WORDS:
        if any(k in words for k in keys):
            return material
    return None


def catalog_entity(
    rng: np.random.Generator, eid: int, model: Model, size, position, yaw, mount: str, scale_jitter: bool = True
) -> Entity:
    """Entity ``eid`` drawn with ``model``'s meshes at ``size`` (jittered unless ``scale_jitter`` is off:
    doors and windows must fit the hole cut for them)."""
    if scale_jitter:
        k = float(rng.uniform(0.92, 1.08))
        size = tuple(float(v * k) for v in size)
    paths = model.asset.part_paths()
    parts = [
        RenderPart(
            kind="mesh_file",
            rgb=tuple(p.rgb),
            area=p.area,
            mesh_file=str(path),
            scale=tuple(size),
            texture=str(path.parent / p.texture) if p.texture else None,
            mean_rgb=tuple(p.mean_rgb),
            transparent=p.transparent,
        )
        for p, path in zip(model.asset.parts, paths)
    ]
    entity = Entity(
        eid,
        model.cls,
        model.entry.noun,
        parts,
        tuple(size),
        tuple(position),
        float(yaw),
        mount,
        source="catalog",
        attribution=model.entry.attribution(),
        material=material_word(model.entry.name),
    )
    _maybe_recolor(rng, entity)
    return entity


def _maybe_recolor(rng: np.random.Generator, entity: Entity) -> None:
    """Repaint every part that shares the main part's colour name with one random named colour."""
    if rng.random() >= RECOLOR.get(entity.category, 0.0):
        return
    main = max(entity.parts, key=lambda p: p.area)
    target = color_name(main.appearance())
    _, rgb = sample_color(rng)
    for p in entity.parts:
        if color_name(p.appearance()) == target:
            p.rgb, p.texture, p.mean_rgb = rgb, None, rgb


def procedural_entity(eid: int, category: str, built: Built, position, yaw, mount: str) -> Entity:
    """Entity ``eid`` made of a procedural build (see :data:`Built`)."""
    parts, size, noun = built
    return Entity(
        eid,
        category,
        noun,
        parts,
        tuple(float(v) for v in size),
        tuple(float(v) for v in position),
        float(yaw),
        mount,
        source="procedural",
        attribution=dict(PROCEDURAL_ATTRIBUTION),
    )
