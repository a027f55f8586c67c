"""A small LRU of prepared scenes, so a loader worker reads each scene file once per few epochs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

SceneT = TypeVar("SceneT")


class SceneCache(Generic[SceneT]):
    """``cache[i]`` loads ``files[i]`` with ``load`` and keeps the ``size`` most recent scenes."""

    def __init__(self, files: list[Path], load: Callable[[Path], SceneT], size: int = 8) -> None:
        self.files = [Path(p) for p in files]
        self._load = load
        self._size = int(size)
        self._scenes: OrderedDict[int, SceneT] = OrderedDict()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SceneT:
        scene = self._scenes.get(index)
        if scene is None:
            scene = self._load(self.files[index])
            self._scenes[index] = scene
            while len(self._scenes) > self._size:
                self._scenes.popitem(last=False)
        else:
            self._scenes.move_to_end(index)
        return scene
