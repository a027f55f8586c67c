"""NYU40 ids -> the class name and the noun the texts use (the simulator's words where it has the class).

``None`` as category: the id names no thing a person would ask for ("otherstructure", "otherprop"):
such instances stay entities (point-to-entity contrast) but get no texts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RealClass:
    category: str | None  # the simulator's class name when it has one, else the NYU40 name in plain words
    nouns: tuple[str, ...] = ()  # words for the texts; the first is the default, others are synonyms
    group: str = "object"  # structure and opening decide how it rests (room.py); furniture | object describe

    def noun_for(self, instance_id: int) -> str | None:
        """The noun an instance's texts use: the synonyms take turns over instances, so a model
        hears "couch" as well as "sofa" for the same kind of thing."""
        return self.nouns[instance_id % len(self.nouns)] if self.nouns else self.category


# Synonyms are the simulator's own nouns for the class (sim.vocabulary's catalogue rules: "couch"
# for sofa, "cupboard" for cabinet, ...) where they are true synonyms, not subtypes ("armchair").
NYU40: dict[int, RealClass] = {
    1: RealClass("wall", group="structure"),
    2: RealClass("floor", group="structure"),
    3: RealClass("cabinet", ("cabinet", "cupboard"), "furniture"),
    4: RealClass("bed", group="furniture"),
    5: RealClass("chair", group="furniture"),
    6: RealClass("sofa", ("sofa", "couch"), "furniture"),
    7: RealClass("table", group="furniture"),
    8: RealClass("door", group="opening"),
    9: RealClass("window", group="opening"),
    10: RealClass("bookshelf", ("bookshelf", "bookcase"), "furniture"),
    11: RealClass("picture", ("picture", "photo frame"), "object"),
    12: RealClass("counter", ("counter", "kitchen counter"), "furniture"),
    13: RealClass("blinds", group="opening"),
    14: RealClass("desk", group="furniture"),
    15: RealClass("shelves", ("shelf", "shelves"), "furniture"),
    16: RealClass("curtain", group="object"),
    17: RealClass("dresser", group="furniture"),
    18: RealClass("pillow", group="object"),
    19: RealClass("mirror", group="object"),
    20: RealClass("floor mat", ("rug", "floor mat"), "object"),
    21: RealClass("clothes", group="object"),
    22: RealClass("ceiling", group="structure"),
    23: RealClass("book", ("book", "books"), "object"),
    24: RealClass("refrigerator", ("refrigerator", "fridge"), "furniture"),
    25: RealClass("television", ("television", "tv"), "object"),
    26: RealClass("paper", group="object"),
    27: RealClass("towel", group="object"),
    28: RealClass("shower curtain", group="object"),
    29: RealClass("box", group="object"),
    30: RealClass("whiteboard", group="object"),
    31: RealClass("person", group="object"),
    32: RealClass("nightstand", ("nightstand", "night stand"), "furniture"),
    33: RealClass("toilet", group="furniture"),
    34: RealClass("sink", group="furniture"),
    35: RealClass("lamp", group="object"),
    36: RealClass("bathtub", group="furniture"),
    37: RealClass("bag", group="object"),
    38: RealClass(None, group="structure"),  # otherstructure
    39: RealClass("other furniture", ("piece of furniture",), "furniture"),
    40: RealClass(None, group="object"),  # otherprop
}


def real_class(nyu40_id: int) -> RealClass:
    """The class of an NYU40 id; unknown ids (0, > 40) are unnamed."""
    return NYU40.get(int(nyu40_id), RealClass(None))
