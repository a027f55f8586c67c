"""Colours per query, shared by the labelled cloud and the markers so they agree in RViz."""

from __future__ import annotations

import numpy as np

# Distinct, readable on both dark and light backgrounds (Tableau 20, strong shades first).
_TABLEAU20 = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (188, 189, 34),
        (23, 190, 207),
        (127, 127, 127),
        (174, 199, 232),
        (255, 187, 120),
        (152, 223, 138),
        (255, 152, 150),
        (197, 176, 213),
        (196, 156, 148),
        (247, 182, 210),
        (219, 219, 141),
        (158, 218, 229),
        (199, 199, 199),
    ],
    dtype=np.uint8,
)
BACKGROUND_GREY = np.array((90, 90, 90), dtype=np.uint8)
# Background points keep a dimmed copy of their own colour so the scene stays recognisable.
BACKGROUND_DIM = 0.35


def query_colors(num_queries: int) -> np.ndarray:
    """(num_queries + 1, 3) uint8: row 0 is background, row i the colour of query i - 1."""
    if num_queries < 0:
        raise ValueError(f"num_queries must be >= 0, got {num_queries}")
    rows = _TABLEAU20[np.arange(num_queries) % len(_TABLEAU20)]
    return np.vstack([BACKGROUND_GREY[None], rows])


def colorize(semantic: np.ndarray, num_queries: int, input_colors: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) uint8 colours: the query's colour, or the dimmed input colour for background."""
    semantic = np.asarray(semantic)
    table = query_colors(num_queries)
    if semantic.size and (semantic.min() < 0 or semantic.max() > num_queries):
        raise ValueError(f"semantic ids must lie in 0..{num_queries}, got {semantic.min()}..{semantic.max()}")
    colors = table[semantic]
    if input_colors is not None:
        background = semantic == 0
        dimmed = (np.asarray(input_colors, dtype=np.float32)[background] * BACKGROUND_DIM).astype(np.uint8)
        colors[background] = dimmed
    return colors
