"""A training scene: one scan reduced to what MPEC needs, prepared once and cached on disk.

Preparation (per source, once; cached under a key of the source's fingerprint and the settings):

1. grid-sample the scan at the training voxel size (one real point per occupied voxel, so labels
   stay exact and the per-view voxel grids see ~1 point per voxel);
2. entities: the per-point instance labels (0 = no entity = the *background entity*) when the scan
   has them, else an unsupervised over-segmentation (``overseg``: every point in some segment);
3. texts: for each entity present, its texts from the annotations (category name and the noun
   the texts use for it, captions, referrals -- which kinds is configurable); identical strings
   are merged, so a text can name several entities (two chairs share "chair");
4. text embeddings from the frozen text encoder, stored with the scene so training never runs
   the text encoder.

A scene without annotations trains the point-to-entity loss only (``texts`` empty).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ov3d_ros.core.voxel import voxelize

from .overseg import OversegConfig, estimate_normals, oversegment
from .sources import LoadedSource, Source, load_source, source_fingerprint

CACHE_VERSION = 1
TEXT_KINDS = ("category", "captions", "referrals")


@dataclass
class SceneConfig:
    """How sources become scenes (part of the cache key)."""

    voxel_size: float = 0.02  # metres: grid sampling, and the network's voxels
    entities: str = "auto"  # auto (instances if the scan has any, else overseg) | instances | overseg
    texts: tuple[str, ...] = TEXT_KINDS
    min_entity_points: int = 10  # smaller instances become background (too few points to pool)
    overseg: OversegConfig = field(default_factory=OversegConfig)

    def __post_init__(self) -> None:
        if self.entities not in ("auto", "instances", "overseg"):
            raise ValueError(f"data.entities must be auto, instances or overseg, got {self.entities!r}")
        bad = [t for t in self.texts if t not in TEXT_KINDS]
        if bad:
            raise ValueError(f"data.texts: unknown kinds {bad}; choose from {list(TEXT_KINDS)}")
        if not self.voxel_size > 0:
            raise ValueError(f"data.voxel_size must be > 0, got {self.voxel_size}")


@dataclass
class TrainingScene:
    """One prepared scan. Entities are 0 (background) .. K; text i names entities ``match[i]``."""

    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8
    normals: np.ndarray  # (N, 3) float32 unit
    entity: np.ndarray  # (N,) int32, 0 = background
    texts: tuple[str, ...]  # unique texts of the scene
    text_embeddings: np.ndarray  # (T, D) float32 unit rows
    match_text: np.ndarray  # (P,) int32: pairs (text, entity) ...
    match_entity: np.ndarray  # (P,) int32: ... that describe each other
    entity_source: str  # "instances" | "overseg"
    source: str

    @property
    def num_entities(self) -> int:
        """K + 1 (the background entity included)."""
        return int(self.entity.max()) + 1 if len(self.entity) else 1

    @property
    def has_language(self) -> bool:
        return len(self.texts) > 0

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
        os.close(handle)
        try:
            np.savez(
                tmp,
                points=self.points,
                colors=self.colors,
                normals=self.normals,
                entity=self.entity,
                texts=np.array(self.texts, dtype=np.str_),
                text_embeddings=self.text_embeddings,
                match_text=self.match_text,
                match_entity=self.match_entity,
                entity_source=np.array(self.entity_source),
                source=np.array(self.source),
            )
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> TrainingScene:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                points=data["points"],
                colors=data["colors"],
                normals=data["normals"],
                entity=data["entity"],
                texts=tuple(str(t) for t in data["texts"]),
                text_embeddings=data["text_embeddings"],
                match_text=data["match_text"],
                match_entity=data["match_entity"],
                entity_source=str(data["entity_source"]),
                source=str(data["source"]),
            )


# ------------------------------------------------------------------------------ annotations
@dataclass
class EntityAnnotation:
    entity_id: int
    category: str | None
    noun: str | None  # the word the texts use when it differs from the category ("armchair" for chair)
    captions: list[str]
    referrals: list[str]


def parse_annotations(annotations: dict | None) -> dict[int, EntityAnnotation]:
    """Sidecar JSON -> {entity (instance) id: texts}. Accepts ``{"entities": {id: {...}}}``,
    ``{"entities": [{"id": ..., ...}]}`` or a bare ``{id: {...}}`` mapping; referrals may be strings
    or objects with a ``text`` field. Raises ValueError on a malformed sidecar."""
    if not annotations:
        return {}
    entities: Any = annotations.get("entities", annotations)
    if isinstance(entities, dict):
        items = []
        for key, value in entities.items():
            if not isinstance(value, dict):
                continue  # other top-level fields (classes, version, ...) in the bare layout
            try:
                items.append((int(key), value))
            except ValueError:
                continue
    elif isinstance(entities, list):
        items = []
        for value in entities:
            if not isinstance(value, dict):
                raise ValueError(f"annotation entity entries must be objects, got {type(value).__name__}")
            key = next((value[k] for k in ("id", "entity_id", "instance_id", "instance") if k in value), None)
            if key is None:
                raise ValueError(f"annotation entity without an id: {sorted(value)}")
            items.append((int(key), value))
    else:
        raise ValueError(f"annotations 'entities' must be an object or a list, got {type(entities).__name__}")
    out = {}
    for entity_id, value in items:
        out[entity_id] = EntityAnnotation(
            entity_id=entity_id,
            category=_text_or_none(value.get("category") or value.get("class") or value.get("name")),
            noun=_text_or_none(value.get("noun")),
            captions=_texts(value.get("captions", [])),
            referrals=_texts(value.get("referrals", [])),
        )
    return out


def _text_or_none(value: Any) -> str | None:
    return " ".join(value.split()) if isinstance(value, str) and value.strip() else None


def _texts(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values or []:
        if isinstance(value, dict):
            value = value.get("text") or value.get("utterance") or value.get("caption")
        text = _text_or_none(value)
        if text:
            out.append(text)
    return out


# ------------------------------------------------------------------------------ preparation
TextEncodeFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (texts, kinds) -> (T, D) unit rows


def prepare_scene(
    loaded: LoadedSource, config: SceneConfig, encode: TextEncodeFn | None, text_dim: int
) -> TrainingScene:
    """Steps 1-4 of the module doc for one loaded source."""
    scan = loaded.scan
    if len(scan) == 0:
        raise ValueError(f"{loaded.source.path}: the scan is empty")
    # 1. one real point per voxel (the first in input order)
    voxels = voxelize(scan.points, config.voxel_size)
    _, first = np.unique(voxels.point_to_voxel, return_index=True)
    keep = np.sort(first)
    points = scan.points[keep]
    colors = scan.colors[keep] if scan.colors is not None else np.full((len(keep), 3), 128, np.uint8)
    normals = scan.normals[keep] if scan.normals is not None else estimate_normals(points, config.overseg.k_normals)

    # 2. entities
    instances = scan.instances[keep] if scan.instances is not None else None
    has_instances = instances is not None and bool((instances > 0).any())
    mode = config.entities
    if mode == "instances" and not has_instances:
        raise ValueError(f"{loaded.source.path}: data.entities is 'instances' but the scan has no instance labels")
    if mode == "overseg" or (mode == "auto" and not has_instances):
        raw_ids = oversegment(points, colors, normals, config.overseg) + 1  # every point in a segment
        source_kind = "overseg"
    else:
        raw_ids = instances.astype(np.int64)
        source_kind = "instances"
    # instances with too few points carry no usable prototype: background
    ids, counts = np.unique(raw_ids, return_counts=True)
    small = ids[(counts < config.min_entity_points) & (ids > 0)]
    raw_ids = np.where(np.isin(raw_ids, small), 0, raw_ids)
    present = np.unique(raw_ids[raw_ids > 0])
    entity = np.searchsorted(present, raw_ids).astype(np.int32) + 1
    entity[raw_ids == 0] = 0

    # 3. texts of the entities present (only for labelled instances: segments have no names)
    texts: list[str] = []
    kinds: list[str] = []
    pairs: set[tuple[int, int]] = set()
    if source_kind == "instances" and loaded.annotations:
        annotated = parse_annotations(loaded.annotations)
        index_of: dict[str, int] = {}
        for slot, instance_id in enumerate(present, start=1):
            note = annotated.get(int(instance_id))
            if note is None:
                continue
            candidates: list[tuple[str, str]] = []
            if "category" in config.texts:
                names = dict.fromkeys(n for n in (note.category, note.noun) if n)  # class name, then its noun
                candidates += [(name, "category") for name in names]
            if "captions" in config.texts:
                candidates += [(t, "captions") for t in note.captions]
            if "referrals" in config.texts:
                candidates += [(t, "referrals") for t in note.referrals]
            for text, kind in candidates:
                if text not in index_of:
                    index_of[text] = len(texts)
                    texts.append(text)
                    kinds.append(kind)
                pairs.add((index_of[text], slot))
    ordered = sorted(pairs)
    match_text = np.array([p[0] for p in ordered], np.int32)
    match_entity = np.array([p[1] for p in ordered], np.int32)

    # 4. embeddings
    if texts:
        if encode is None:
            raise ValueError("prepare_scene: the scene has texts but no text encoder was given")
        embeddings = np.asarray(encode(texts, kinds), dtype=np.float32)
    else:
        embeddings = np.zeros((0, text_dim), np.float32)
    return TrainingScene(
        points=points.astype(np.float32),
        colors=np.asarray(colors, np.uint8),
        normals=np.asarray(normals, np.float32),
        entity=entity,
        texts=tuple(texts),
        text_embeddings=embeddings,
        match_text=match_text,
        match_entity=match_entity,
        entity_source=source_kind,
        source=str(loaded.source.path),
    )


def scene_cache_key(source: Source, config: SceneConfig, text_space: dict) -> str:
    from ov3d_training.trainer.config import to_dict

    payload = {
        "version": CACHE_VERSION,
        "source": source_fingerprint(source),
        "config": to_dict(config),
        "text_space": text_space,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def prepare_scenes(
    sources: list[Source],
    config: SceneConfig,
    cache_dir: Path,
    encode: Callable[[], TextEncodeFn] | None,
    text_space: dict,
    text_dim: int,
    progress: bool = False,
) -> list[Path]:
    """Prepared scene files for ``sources`` (prepared now if not cached). ``encode`` is a factory,
    called only if some scene needs encoding (loading a text encoder takes seconds)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    encoder: TextEncodeFn | None = None
    out = []
    iterator = sources
    if progress:
        from tqdm import tqdm

        iterator = tqdm(sources, desc="preparing scenes", dynamic_ncols=True)
    for source in iterator:
        path = cache_dir / f"scene_{scene_cache_key(source, config, text_space)}.npz"
        if not path.is_file():
            loaded = load_source(source)
            if encoder is None and encode is not None and loaded.annotations:
                encoder = encode()
            prepare_scene(loaded, config, encoder, text_dim).save(path)
        out.append(path)
    return out
