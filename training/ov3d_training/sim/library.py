"""The set of usable furniture models: catalogue entries mapped to a class, processed, filtered."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assets import ASSET_VERSION, MAX_DISTORTION, AssetCache, ModelAsset
from .catalog import CatalogEntry, read_catalog
from .procedural import painting_textures


@dataclass(frozen=True)
class Model:
    entry: CatalogEntry
    asset: ModelAsset

    @property
    def cls(self) -> str:
        return self.entry.cls


class ModelLibrary:
    """Processed catalogue models by class.

    ``build`` processes every mapped model not yet in the cache (the slow part, paid once: later
    builds only read the cached JSON); ``workers`` > 1 spreads the first build over processes.
    """

    def __init__(self, models: list[Model], cache: AssetCache):
        self.cache = cache
        self.models = models
        self.by_class: dict[str, list[Model]] = defaultdict(list)
        for m in models:
            self.by_class[m.cls].append(m)
        self.paintings = painting_textures(cache.root / f"v{ASSET_VERSION}" / "procedural")

    @classmethod
    def build(
        cls,
        cache_dir: Path | None = None,
        furniture_dir: Path | None = None,
        workers: int = 1,
        progress: bool = False,
    ) -> ModelLibrary:
        cache = AssetCache(cache_dir, furniture_dir)
        entries = [e for e in read_catalog(cache.furniture_dir) if e.cls is not None]
        missing = [e for e in entries if not (cache.model_dir(e) / "asset.json").exists()]
        if missing and workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                jobs = [(str(cache.root), str(cache.furniture_dir), e) for e in missing]
                it = pool.imap_unordered(_process_one, jobs)
                if progress:
                    from tqdm import tqdm

                    it = tqdm(it, total=len(missing), desc="processing furniture models", unit="model")
                for _ in it:
                    pass
        elif missing and progress:
            from tqdm import tqdm

            for e in tqdm(missing, desc="processing furniture models", unit="model"):
                cache.get(e)
        models = []
        for e in entries:
            asset = cache.get(e)
            if asset.distortion <= MAX_DISTORTION:
                models.append(Model(e, asset))
        return cls(models, cache)

    def classes(self) -> list[str]:
        return sorted(self.by_class)

    def candidates(
        self,
        cls: str,
        *,
        max_height: float | None = None,
        min_height: float | None = None,
        max_width: float | None = None,
        max_depth: float | None = None,
        wall_mounted: bool | None = None,
        noun: str | None = None,
    ) -> list[Model]:
        out = []
        for m in self.by_class.get(cls, []):
            if noun is not None and m.entry.noun != noun:
                continue
            w, d, h = m.entry.size_m
            if max_height is not None and h > max_height:
                continue
            if min_height is not None and h < min_height:
                continue
            if max_width is not None and w > max_width:
                continue
            if max_depth is not None and d > max_depth:
                continue
            if wall_mounted is not None and (m.entry.elevation_cm > 0) != wall_mounted:
                continue
            out.append(m)
        return out

    def pick(self, rng: np.random.Generator, cls: str, **filters) -> Model | None:
        options = self.candidates(cls, **filters)
        if not options:
            return None
        return options[int(rng.integers(len(options)))]


def _process_one(args) -> str:
    root, furniture, entry = args
    AssetCache(Path(root), Path(furniture)).get(entry)
    return entry.catalog_id
