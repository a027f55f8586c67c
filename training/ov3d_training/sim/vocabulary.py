"""The simulator's class vocabulary and the reviewed Sweet Home 3D catalogue -> class mapping.

Semantic ids are positions in :data:`CLASSES` (1-based); 0 means unlabelled. The ids travel in the
point label (``semantic << 16 | instance``) but the annotations always carry the class *names*, so
training never depends on these numbers. The first 20 classes are ScanNet-20 in benchmark order;
``nyu40_id`` is the NYU-40 id where one exists (the ScanNet-20 ids and a few well-known props).

``typical_size`` (width, depth, height in metres) is the reference for size adjectives in captions
("a tall bookshelf"): the median catalogue size for classes built from catalogue models, a
standard size for procedural ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNLABELED = 0


@dataclass(frozen=True)
class SimClass:
    name: str
    semantic_id: int
    scannet20: bool
    nyu40_id: int | None
    typical_size: tuple[float, float, float]
    group: str  # "structure" | "furniture" | "object"


def _classes() -> tuple[SimClass, ...]:
    # (name, nyu40, typical w/d/h metres, group); order fixes the semantic ids.
    scannet20 = [
        ("wall", 1, (4.0, 0.1, 2.6), "structure"),
        ("floor", 2, (4.0, 4.0, 0.0), "structure"),
        ("cabinet", 3, (0.6, 0.5, 0.85), "furniture"),
        ("bed", 4, (1.6, 2.1, 0.9), "furniture"),
        ("chair", 5, (0.5, 0.55, 0.88), "furniture"),
        ("sofa", 6, (1.95, 0.85, 0.84), "furniture"),
        ("table", 7, (1.3, 0.8, 0.74), "furniture"),
        ("door", 8, (0.95, 0.17, 2.07), "structure"),
        ("window", 9, (1.1, 0.3, 2.0), "structure"),
        ("bookshelf", 10, (0.95, 0.37, 1.8), "furniture"),
        ("picture", 11, (0.6, 0.03, 0.45), "object"),
        ("counter", 12, (1.8, 0.62, 0.04), "furniture"),
        ("desk", 14, (1.4, 0.7, 0.74), "furniture"),
        ("curtain", 16, (0.7, 0.08, 2.3), "furniture"),
        ("refrigerator", 24, (0.75, 0.7, 1.75), "furniture"),
        ("shower curtain", 28, (1.5, 0.06, 1.3), "furniture"),
        ("toilet", 33, (0.42, 0.7, 0.77), "furniture"),
        ("sink", 34, (0.65, 0.5, 0.86), "furniture"),
        ("bathtub", 36, (1.7, 0.8, 0.7), "furniture"),
        ("other furniture", 39, (1.0, 0.5, 0.7), "furniture"),
    ]
    extras = [
        ("ceiling", 22, (4.0, 4.0, 0.0), "structure"),
        ("mug", None, (0.09, 0.1, 0.1), "object"),
        ("cup", None, (0.08, 0.08, 0.13), "object"),
        ("bottle", None, (0.07, 0.07, 0.22), "object"),
        ("monitor", None, (0.55, 0.2, 0.45), "object"),
        ("television", 25, (0.8, 0.15, 0.55), "object"),
        ("keyboard", None, (0.44, 0.14, 0.03), "object"),
        ("laptop", None, (0.33, 0.25, 0.25), "object"),
        ("lamp", 35, (0.3, 0.3, 0.5), "object"),
        ("plant", None, (0.45, 0.45, 0.6), "object"),
        ("vase", None, (0.24, 0.24, 0.35), "object"),
        ("trash can", None, (0.3, 0.3, 0.45), "object"),
        ("backpack", 37, (0.29, 0.34, 0.4), "object"),
        ("bag", 37, (0.35, 0.15, 0.3), "object"),
        ("pillow", 18, (0.5, 0.35, 0.14), "object"),
        ("book", 23, (0.17, 0.24, 0.03), "object"),
        ("bowl", None, (0.3, 0.3, 0.15), "object"),
        ("clock", None, (0.25, 0.1, 0.3), "object"),
        ("box", 29, (0.5, 0.4, 0.3), "object"),
        ("microwave", None, (0.5, 0.38, 0.3), "object"),
        ("stove", None, (0.6, 0.55, 0.85), "furniture"),
        ("washing machine", None, (0.6, 0.6, 0.84), "furniture"),
        ("towel", 27, (0.4, 0.12, 0.5), "object"),
        ("radiator", None, (0.9, 0.15, 0.65), "furniture"),
        ("nightstand", 32, (0.5, 0.45, 0.47), "furniture"),
        ("dresser", 17, (1.2, 0.5, 0.82), "furniture"),
        ("wardrobe", None, (1.9, 0.6, 2.05), "furniture"),
        ("coffee maker", None, (0.2, 0.3, 0.3), "object"),
        ("speaker", None, (0.22, 0.25, 0.45), "object"),
        ("telephone", None, (0.15, 0.18, 0.1), "object"),
        ("whiteboard", 30, (1.25, 0.55, 1.3), "furniture"),
        ("piano", None, (1.4, 0.6, 1.4), "furniture"),
        ("fan", None, (0.3, 0.21, 0.36), "object"),
        ("toy", None, (0.3, 0.25, 0.3), "object"),
        ("shoe", None, (0.25, 0.3, 0.12), "object"),
    ]
    out = []
    for i, (name, nyu, size, group) in enumerate(scannet20 + extras, start=1):
        out.append(SimClass(name, i, i <= len(scannet20), nyu, size, group))
    return tuple(out)


CLASSES: tuple[SimClass, ...] = _classes()
CLASS_BY_NAME: dict[str, SimClass] = {c.name: c for c in CLASSES}
SCANNET20: tuple[str, ...] = tuple(c.name for c in CLASSES if c.scannet20)
HOUSEHOLD_EXTRAS: tuple[str, ...] = tuple(c.name for c in CLASSES if not c.scannet20)


def semantic_id(name: str) -> int:
    """Semantic id of a vocabulary class; KeyError names the known classes."""
    try:
        return CLASS_BY_NAME[name].semantic_id
    except KeyError:
        raise KeyError(f"unknown simulator class {name!r}; known: {', '.join(CLASS_BY_NAME)}") from None


def class_table() -> list[dict]:
    """The vocabulary as plain data for the annotation sidecar."""
    return [
        {"id": c.semantic_id, "name": c.name, "scannet20": c.scannet20, "nyu40_id": c.nyu40_id, "group": c.group}
        for c in CLASSES
    ]


# --- Catalogue mapping ----------------------------------------------------------------------------
#
# Reviewed against the 820 entries of sweethome3d-furniture 1.8 (see docs/simulation.md for the
# coverage table). Rules are tried in order; the first whose name pattern matches (and whose
# catalogue category / size constraints hold) decides. ``noun`` is the word used in texts
# (None = the catalogue name, lower-cased); a rule with class None deliberately skips the model.
# Catalogue sizes are centimetres.

SKIPPED_CATEGORIES = frozenset({"Characters", "Vehicles", "Staircases"})
# Exterior models are garden furniture and trees; these few are fine indoors.
EXTERIOR_ALLOWED = frozenset(
    {"Residential trashcan", "Spray bottle", "Cafe chair", "Cafe table", "Teck chair", "Rattan armchair", "Rattan sofa"}
)


@dataclass(frozen=True)
class MappingRule:
    pattern: str
    cls: str | None
    noun: str | None = None
    categories: frozenset[str] | None = None
    max_height_cm: float | None = None
    min_height_cm: float | None = None
    max_elevation_cm: float | None = None

    def matches(self, name: str, category: str, height_cm: float, elevation_cm: float = 0.0) -> bool:
        if not re.search(self.pattern, name.lower()):
            return False
        if self.max_elevation_cm is not None and elevation_cm > self.max_elevation_cm:
            return False
        if self.categories is not None and category not in self.categories:
            return False
        if self.max_height_cm is not None and height_cm > self.max_height_cm:
            return False
        if self.min_height_cm is not None and height_cm < self.min_height_cm:
            return False
        return True


def _r(pattern, cls, noun=None, categories=None, max_h=None, min_h=None, max_elev=None) -> MappingRule:
    cats = frozenset(categories) if categories else None
    return MappingRule(pattern, cls, noun, cats, max_h, min_h, max_elev)


DOORS_WINDOWS = ("Doors and windows",)
LIGHTS = ("Lights",)

MAPPING_RULES: tuple[MappingRule, ...] = (
    # Openings. Garage/elevator doors and the screen door do not belong in a room's wall.
    _r(r"garage|elevator|screen door|shutter", None),
    _r(r"door", "door", "door", DOORS_WINDOWS),
    _r(r"window", "window", "window", DOORS_WINDOWS),
    # Words that would otherwise be caught by broader rules below.
    _r(r"bedside table|night ?stand", "nightstand", "nightstand"),
    _r(r"dressing table|dresser|^chest$", "dresser", "dresser"),
    _r(r"television cabinet", "other furniture", "tv cabinet"),
    _r(r"^puff$", "other furniture", "pouf"),
    _r(r"ottoman$", "other furniture", "ottoman"),
    _r(r"^trunck$", "other furniture", "trunk"),
    _r(r"changing table|tv stand|^bench$|piano bench|clothes rack|workbench|^safe$|aquarium", "other furniture"),
    _r(r"^table fan$|rigged fan", "fan", "fan"),
    _r(r"table tennis|football table|pool table|technical table|remote control", None),
    _r(r"desk lamp", "lamp", "desk lamp", LIGHTS, None, None, 0),
    _r(r"\bdesk\b", "desk", "desk"),
    _r(r"shower curtain", "shower curtain", "shower curtain"),
    _r(r"^curtain$", "curtain", "curtain"),
    _r(r"opened convertible sofa", "bed", "sofa bed"),
    _r(r"corner sofa", "sofa", "corner sofa"),
    _r(r"couch", "sofa", "couch"),
    _r(r"sofa", "sofa", "sofa"),
    _r(r"mezzanine bed", "bed", "loft bed"),
    _r(r"bunk bed|captain's bed|child bed|day bed|hospital bed|iron bed|baby bed|^bed$|^crib$|^futon$", "bed"),
    _r(r"wheelchair|beach chair|deck chair|relax chair", None),
    _r(r"armchair", "chair", "armchair"),
    _r(r"bar stool|^stool$", "chair", "stool"),
    _r(r"chair|class seat", "chair", "chair"),
    _r(r"fridge|refrigerator|chest freezer", "refrigerator", "refrigerator"),
    _r(r"toilets unit", "toilet", "toilet"),
    _r(r"washbasin|^basin$|small lavatory|vanity|^sink", "sink", "sink"),
    _r(r"^bath$|bathtub|island bath", "bathtub", "bathtub"),
    _r(r"^island", "counter", "kitchen island"),
    _r(r"wardrobe", "wardrobe", "wardrobe"),
    _r(r"cabinet|cupboard", "cabinet", "cabinet"),
    _r(r"bookcase|bookshelf|shelves", "bookshelf", "bookshelf"),
    _r(r"coffee table", "table", "coffee table"),
    _r(r"\btable\b", "table", "table"),
    _r(r"wall flat tv|^tv\b|^television$", "television", "television"),
    _r(r"imac", "monitor", "computer"),
    _r(r"laptop|ibook", "laptop", "laptop"),
    _r(
        r"lamppost|street l|park light|outdoor lamp|porch light|wall lamp|ceiling lamp|chandelier|hanging light"
        r"|pendant lamp|track lights|fluorescent|wall light|wall spotlight|flashlight|candle",
        None,
    ),
    # Lamps hung from the ceiling carry an elevation; only table and floor lamps are used.
    _r(r"^lamp$", "lamp", "floor lamp", LIGHTS, None, 100.0, 0),
    _r(r"lantern", "lamp", "lantern", LIGHTS, None, None, 0),
    _r(r"lamp", "lamp", "lamp", LIGHTS, None, None, 0),
    _r(r"spathiphyllum", "plant", "peace lily", ("Living room",)),
    _r(r"orchids", "plant", "orchid", ("Living room",)),
    _r(r"cactus|bonsai|ficus|yucca|tulip|lily|^flowers$|christmas tree|succulent", "plant", None, ("Living room",)),
    _r(r"plant|bamboo", "plant", "plant", ("Living room",)),
    _r(r"^vase$|old jar|pottery", "vase", "vase"),
    _r(r"trash ?can|dustbin|recycling bin", "trash can", "trash can"),
    _r(r"backpack", "backpack", "backpack"),
    _r(r"handbag|briefcase|suitcase", "bag"),
    _r(r"^book$", "book", "book"),
    _r(r"\bbowl\b", "bowl", "bowl"),
    _r(r"coffee mug|coffee cup|^cup$", "mug", "mug"),
    _r(r"^glass$", "cup", "drinking glass"),
    _r(r"^(beer |cocktail )glass$|plastic cup", "cup"),
    _r(r"^bottle$|medicine bottle", "bottle", "bottle"),
    _r(r"bottle", "bottle"),
    _r(r"clock", "clock"),
    _r(r"^gift$", "box", "gift box"),
    _r(r"^box$|cardboard box|^crate$", "box", None, None, 70.0),
    _r(r"microwave", "microwave", "microwave"),
    _r(r"small oven", "stove", "toaster oven"),
    _r(r"oven|large stove|propane stove", "stove", "stove", None, None, 30.0),
    _r(r"washing machine", "washing machine", "washing machine"),
    _r(r"dryer machine", "washing machine", "dryer"),
    _r(r"^towel$", "towel", "towel"),
    _r(r"radiator", "radiator", "radiator"),
    _r(r"coffee (brewer|machine|maker|press)|espresso kettle", "coffee maker", "coffee maker"),
    _r(r"^speaker$", "speaker", "speaker"),
    _r(r"mini stereo", "speaker", "stereo"),
    _r(r"^phone$|wireless phone", "telephone", "phone"),
    _r(r"mobile phone|iphone", "telephone", "mobile phone"),
    _r(r"white board", "whiteboard", "whiteboard"),
    _r(r"piano", "piano", "piano"),
    _r(r"wood toy", "toy", "wooden toy"),
    _r(r"teddy bear|rocking horse|^doll|toy train|xylophone|rubik", "toy"),
    _r(r"sneakers|shoes|mocassin|slippers|bootie", "shoe", "shoes"),
    _r(r"^frame ", "picture", "photo frame"),
)


def map_catalogue_entry(
    name: str, category: str, height_cm: float, elevation_cm: float = 0.0
) -> tuple[str, str] | None:
    """(class, noun) for a catalogue model, or None when the model is not used."""
    if category in SKIPPED_CATEGORIES:
        return None
    if category == "Exterior" and name not in EXTERIOR_ALLOWED:
        return None
    for rule in MAPPING_RULES:
        if rule.matches(name, category, height_cm, elevation_cm):
            if rule.cls is None:
                return None
            return rule.cls, (rule.noun or name.lower())
    return None
