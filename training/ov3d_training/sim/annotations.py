"""The annotation sidecar (``annotations.json`` beside the bag's ``metadata.yaml``).

Format ``ov3d_sim/1`` (documented in docs/simulation.md)::

    {"format": "ov3d_sim/1",
     "label_encoding": "...", "classes": [{"id", "name", "scannet20", "nyu40_id", "group"}],
     "room": {"type", "size_m", "wall_thickness_m"},
     "entities": [{"id", "category", "semantic_id", "noun", "attributes", "captions",
                   "referrals": [{"text", "relations": [{"type", "targets"}]}],
                   "aabb": {"min", "max"}, "pose": {"position", "yaw", "size"},
                   "mount", "support", "wall", "attribution"}],
     "relations": [{"type", "subject", "targets"}], "relation_thresholds_m": {...},
     "recording": {...}, "attribution": {...}}

Entity ids are the point labels' instance part; ``semantic_id`` their semantic part.
"""

from __future__ import annotations

from collections import Counter

from .catalog import LIBRARY_LICENSES
from .relations import THRESHOLDS, Relation
from .scene import WALL_T, Scene
from .texts import Describer, attributes, captions, referrals
from .vocabulary import class_table, semantic_id

FORMAT = "ov3d_sim/1"
LABEL_ENCODING = (
    "PointCloud2 field 'label' (UINT32) = semantic << 16 | instance; semantic = classes[].id "
    "(0 = unlabelled), instance = entities[].id (0 = none)"
)


def _r(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


def build_annotations(scene: Scene, facts: list[Relation], recording: dict) -> dict:
    attrs = {e.id: attributes(e) for e in scene.entities}
    describer = Describer(scene, attrs)
    entities = []
    for e in scene.entities:
        entities.append(
            {
                "id": e.id,
                "category": e.category,
                "semantic_id": semantic_id(e.category),
                "noun": e.noun,
                "attributes": attrs[e.id],
                "captions": captions(e, attrs[e.id], scene.room_type),
                "referrals": referrals(e, facts, describer),
                "aabb": e.box.to_json(),
                "pose": {"position": _r(e.position), "yaw": round(float(e.yaw), 5), "size": _r(e.size)},
                "mount": e.mount,
                "support": e.support,
                "wall": e.wall,
                "attribution": e.attribution,
            }
        )
    libraries = sorted({e.attribution.get("source", "") for e in scene.entities if e.source == "catalog"})
    licences = Counter(e.attribution.get("license") for e in scene.entities)
    return {
        "format": FORMAT,
        "label_encoding": LABEL_ENCODING,
        "classes": class_table(),
        "room": {"type": scene.room_type, "size_m": _r(scene.size, 3), "wall_thickness_m": WALL_T},
        "entities": entities,
        "relations": [f.to_json() for f in facts],
        "relation_thresholds_m": THRESHOLDS,
        "recording": recording,
        "attribution": {
            "furniture": "Sweet Home 3D furniture libraries (Debian package sweethome3d-furniture 1.8); "
            "each entity's 'attribution' names the model, its creator and licence",
            "sources": libraries,
            "licenses": {k: v for k, v in sorted(licences.items(), key=lambda kv: str(kv[0]))},
            "license_texts": {k: v[1] for k, v in LIBRARY_LICENSES.items()},
        },
    }
