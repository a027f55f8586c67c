"""The ScanNet-20 benchmark classes (OpenScene / GeoPurify convention) over NYU40 ids.

Every NYU40 id not listed here is ignored in evaluation. ``FOREGROUND_EXCLUDED`` are the classes
the f-metrics drop from both the candidates and the ground truth (MPEC / RegionPLC protocol).
"""

from __future__ import annotations

import numpy as np

# (NYU40 id, query text); the text is what the segmenter is asked, in benchmark order
SCANNET20: tuple[tuple[int, str], ...] = (
    (1, "wall"),
    (2, "floor"),
    (3, "cabinet"),
    (4, "bed"),
    (5, "chair"),
    (6, "sofa"),
    (7, "table"),
    (8, "door"),
    (9, "window"),
    (10, "bookshelf"),
    (11, "picture"),
    (12, "counter"),
    (14, "desk"),
    (16, "curtain"),
    (24, "refrigerator"),
    (28, "shower curtain"),
    (33, "toilet"),
    (34, "sink"),
    (36, "bathtub"),
    (39, "other furniture"),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for _, name in SCANNET20)
NYU40_IDS: tuple[int, ...] = tuple(nyu for nyu, _ in SCANNET20)
FOREGROUND_EXCLUDED: tuple[str, ...] = ("wall", "floor", "other furniture")
IGNORE = -1


def nyu40_to_class_index(nyu40: np.ndarray) -> np.ndarray:
    """(N,) NYU40 ids -> (N,) int64 index into CLASS_NAMES, IGNORE (-1) for every other id."""
    nyu40 = np.asarray(nyu40).astype(np.int64)
    lookup = np.full(max(int(nyu40.max(initial=0)), max(NYU40_IDS)) + 1, IGNORE, dtype=np.int64)
    lookup[list(NYU40_IDS)] = np.arange(len(NYU40_IDS))
    out = np.full(nyu40.shape, IGNORE, dtype=np.int64)
    valid = nyu40 >= 0
    out[valid] = lookup[nyu40[valid]]
    return out


# ScanNet's own benchmark colours (RGB 0..255), in CLASS_NAMES order, so renders look familiar
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (174, 199, 232),
    (152, 223, 138),
    (31, 119, 180),
    (255, 187, 120),
    (188, 189, 34),
    (140, 86, 75),
    (255, 152, 150),
    (214, 39, 40),
    (197, 176, 213),
    (148, 103, 189),
    (196, 156, 148),
    (23, 190, 207),
    (247, 182, 210),
    (219, 219, 141),
    (255, 127, 14),
    (158, 218, 229),
    (44, 160, 44),
    (112, 128, 144),
    (227, 119, 194),
    (82, 84, 163),
)

CLASS_SETS = {"scannet20": CLASS_NAMES}
