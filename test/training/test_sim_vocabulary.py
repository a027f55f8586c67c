"""The simulator's vocabulary and the reviewed catalogue mapping."""

from __future__ import annotations

from collections import Counter

import pytest
from sim_support import require_furniture

from ov3d_training.sim.catalog import parse_properties, read_catalog
from ov3d_training.sim.vocabulary import (
    CLASSES,
    HOUSEHOLD_EXTRAS,
    SCANNET20,
    map_catalogue_entry,
    semantic_id,
)

SCANNET20_BENCHMARK = (
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "desk",
    "curtain",
    "refrigerator",
    "shower curtain",
    "toilet",
    "sink",
    "bathtub",
    "other furniture",
)
NYU40_OF_SCANNET20 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
# Classes built procedurally (alone or besides catalogue models).
PROCEDURAL = {
    "wall",
    "floor",
    "ceiling",
    "picture",
    "counter",
    "curtain",
    "shower curtain",
    "pillow",
    "book",
    "keyboard",
    "monitor",
    "nightstand",
    "cabinet",
}


def test_scannet20_first_in_benchmark_order_with_nyu40_ids():
    assert SCANNET20 == SCANNET20_BENCHMARK
    assert tuple(c.nyu40_id for c in CLASSES[:20]) == NYU40_OF_SCANNET20
    assert [c.semantic_id for c in CLASSES] == list(range(1, len(CLASSES) + 1))


def test_at_least_twenty_household_extras_including_the_common_requests():
    objects = set(HOUSEHOLD_EXTRAS) - {"ceiling"}
    assert len(objects) >= 20
    assert {"mug", "bottle", "monitor", "lamp", "plant", "trash can", "backpack"} <= objects


def test_semantic_id_names_known_classes_on_error():
    assert semantic_id("wall") == 1
    with pytest.raises(KeyError, match="known: wall, floor"):
        semantic_id("spaceship")


@pytest.mark.parametrize(
    "name, category, height, expected",
    [
        ("Bedside table", "Bedroom", 45, ("nightstand", "nightstand")),
        ("Coffee table", "Living room", 45, ("table", "coffee table")),
        ("Glass door cabinet", "Kitchen", 72, ("cabinet", "cabinet")),
        ("Table fan", "Miscellaneous", 40, ("fan", "fan")),
        ("Tablet", "Miscellaneous", 0.8, None),
        ("TV remote control", "Living room", 1.7, None),
        ("Garage door", "Doors and windows", 220, None),
        ("Armchair", "Living room", 80, ("chair", "armchair")),
        ("Sofa 3 seats", "Living room", 88, ("sofa", "sofa")),
        ("Shower curtain", "Bathroom", 190, ("shower curtain", "shower curtain")),
        ("Coffee mug", "Kitchen", 10.8, ("mug", "mug")),
        ("Residential trashcan", "Exterior", 80, ("trash can", "trash can")),
        ("Bench", "Exterior", 50, None),
        ("Male", "Characters", 185, None),
    ],
)
def test_mapping_rules(name, category, height, expected):
    assert map_catalogue_entry(name, category, height) == expected


def test_ceiling_lamps_are_not_used_as_table_or_floor_lamps():
    assert map_catalogue_entry("Lamp", "Lights", 63.4, elevation_cm=186.6) is None
    assert map_catalogue_entry("Lamp", "Lights", 142.9) == ("lamp", "floor lamp")


def test_properties_parser_handles_escapes_and_continuations():
    text = "# comment\nname#1=Bill 10\\u20ac\nkey : value\nlong=a\\\n  b\n"
    assert parse_properties(text) == {"name#1": "Bill 10\u20ac", "key": "value", "long": "ab"}


def test_catalogue_covers_the_vocabulary():
    require_furniture()
    entries = read_catalog()
    assert len(entries) == 820  # sweethome3d-furniture 1.8
    counts = Counter(e.cls for e in entries if e.cls)
    for name in SCANNET20 + HOUSEHOLD_EXTRAS:
        assert counts[name] > 0 or name in PROCEDURAL, f"no model or generator for {name!r}"
    # "10 or more" for the common furniture classes
    for name in ("chair", "table", "sofa", "bed", "cabinet", "door", "window", "sink"):
        assert counts[name] >= 10, (name, counts[name])
    for e in entries:
        if e.cls:
            assert e.license in {"CC0-1.0", "CC-BY-3.0", "CC-BY-3.0-US"}
            assert e.creator, e.name
