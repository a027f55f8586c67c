"""Procedural entities for classes the catalogue lacks or has too few of.

Each builder returns ``(parts, size, noun)``: render parts in the entity frame (base centre at the
origin, front facing -y, back at +y) and the entity's (width, depth, height) in metres. Sizes are
drawn from realistic ranges; colours are named colours (see :mod:`colors`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from .colors import sample_color
from .geometry import RenderPart, box_area, mesh_area

PAINTINGS = 12


def _box(half, offset, rgb, texture=None, mean_rgb=None) -> RenderPart:
    half = tuple(float(h) for h in half)
    return RenderPart(
        kind="box",
        rgb=tuple(rgb),
        area=box_area(half),
        half_extents=half,
        offset=tuple(float(o) for o in offset),
        texture=texture,
        mean_rgb=mean_rgb,
    )


def _mesh(vertices: np.ndarray, indices: np.ndarray, rgb) -> RenderPart:
    both = np.concatenate([indices, indices[:, ::-1]])  # two-sided: no back-face surprises
    return RenderPart(kind="mesh", rgb=tuple(rgb), area=mesh_area(vertices, indices), vertices=vertices, indices=both)


def _shade(rgb, factor: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * factor, 0.0, 1.0)) for c in rgb)


def painting_textures(directory: Path) -> list[tuple[Path, tuple[float, float, float]]]:
    """Abstract 'paintings' (deterministic PNGs, written once) and their mean colours."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(PAINTINGS):
        path = directory / f"painting{k:02d}.png"
        rng = np.random.default_rng(1000 + k)
        h, w = 48, 64
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = c0 + (c1 - c0) * (xx if k % 2 else yy)[..., None]
        for _ in range(int(rng.integers(3, 8))):
            color = rng.uniform(0, 1, 3)
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
            if rng.random() < 0.5:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            else:
                mask = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r * rng.uniform(0.3, 1.0))
            img[mask] = color
        rgb8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        if not path.exists():
            # unique temporary name: several processes may fill the same cache at once
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.png")
            Image.fromarray(rgb8).save(tmp)
            os.replace(tmp, path)
        out.append((path, tuple(float(x) for x in rgb8.reshape(-1, 3).mean(0) / 255.0)))
    return out


def picture(rng: np.random.Generator, paintings) -> tuple[list[RenderPart], tuple, str]:
    w, h = rng.uniform(0.3, 1.0), rng.uniform(0.25, 0.8)
    depth, frame = 0.03, rng.uniform(0.015, 0.05)
    _, frame_rgb = sample_color(rng, ("black", "white", "brown", "grey", "yellow"))
    path, mean = paintings[int(rng.integers(len(paintings)))]
    parts = [
        _box((w / 2, depth / 2 * 0.8, h / 2), (0, 0.1 * depth, h / 2), frame_rgb),
        # the canvas sits just in front of the frame's back panel
        _box((w / 2 - frame, depth / 2 * 0.2, h / 2 - frame), (0, -0.4 * depth, h / 2), (1, 1, 1), str(path), mean),
    ]
    return parts, (w, depth, h), "picture"


def _pleated_sheet(width, height, depth, pleats, z0=0.0):
    nx = max(8, int(pleats * 8))
    x = np.linspace(-width / 2, width / 2, nx)
    y = depth / 2 * np.sin(np.linspace(0, 2 * np.pi * pleats, nx))
    bottom = np.stack([x, y, np.full(nx, z0)], 1)
    top = np.stack([x, y, np.full(nx, z0 + height)], 1)
    verts = np.concatenate([bottom, top])
    i = np.arange(nx - 1)
    tris = np.concatenate([np.stack([i, i + 1, nx + i], 1), np.stack([i + 1, nx + i + 1, nx + i], 1)])
    return verts, tris


def curtain(rng: np.random.Generator, height: float, width: float | None = None):
    width = width if width is not None else rng.uniform(0.4, 0.9)
    depth = rng.uniform(0.05, 0.1)
    _, rgb = sample_color(rng, ("white", "beige", "red", "blue", "green", "grey", "yellow", "purple", "brown"))
    verts, tris = _pleated_sheet(width, height, depth, pleats=width / 0.12)
    return [_mesh(verts, tris, rgb)], (width, depth, height), "curtain"


def shower_curtain(rng: np.random.Generator, width: float, top: float, bottom: float):
    depth = 0.06
    _, rgb = sample_color(rng, ("white", "blue", "green", "pink", "grey", "beige"))
    height = top - bottom
    verts, tris = _pleated_sheet(width, height - 0.03, depth, pleats=width / 0.1)
    rod = _box((width / 2, 0.01, 0.01), (0, 0, height - 0.01), (0.75, 0.75, 0.78))
    return [_mesh(verts, tris, rgb), rod], (width, depth, height), "shower curtain"


def counter_top(rng: np.random.Generator, length: float, depth: float):
    thickness = rng.uniform(0.03, 0.05)
    _, rgb = sample_color(rng, ("white", "black", "grey", "beige", "brown"))
    slab = _box((length / 2, depth / 2, thickness / 2), (0, 0, thickness / 2), rgb)
    return [slab], (length, depth, thickness), "counter"


def base_cabinet(rng: np.random.Generator, length: float, depth: float, height: float):
    _, rgb = sample_color(rng, ("white", "grey", "brown", "beige", "blue", "green"))
    plinth = 0.08
    parts = [
        _box((length / 2, depth / 2 - 0.03, plinth / 2), (0, 0.03, plinth / 2), _shade(rgb, 0.5)),
        _box((length / 2, depth / 2, (height - plinth) / 2), (0, 0, plinth + (height - plinth) / 2), rgb),
    ]
    return parts, (length, depth, height), "cabinet"


def nightstand(rng: np.random.Generator):
    w, d, h = rng.uniform(0.38, 0.55), rng.uniform(0.32, 0.45), rng.uniform(0.42, 0.6)
    _, rgb = sample_color(rng, ("white", "brown", "black", "grey", "beige"))
    parts = [
        _box((w / 2, d / 2 - 0.01, h / 2 - 0.015), (0, 0.01, h / 2 - 0.015), rgb),
        _box((w / 2 + 0.01, d / 2 + 0.005, 0.015), (0, 0.0, h - 0.015), _shade(rgb, 0.85)),
        _box((w / 2 - 0.03, 0.01, h * 0.18), (0, -d / 2 + 0.01, h * 0.62), _shade(rgb, 1.1)),
    ]
    return parts, (w + 0.02, d + 0.01, h), "nightstand"


def pillow(rng: np.random.Generator):
    w, d, h = rng.uniform(0.4, 0.65), rng.uniform(0.3, 0.45), rng.uniform(0.1, 0.18)
    _, rgb = sample_color(rng)
    nu, nv = 24, 12
    u = np.linspace(-np.pi, np.pi, nu, endpoint=False)
    v = np.linspace(-np.pi / 2, np.pi / 2, nv)
    uu, vv = np.meshgrid(u, v)
    f = lambda t, e: np.sign(t) * np.abs(t) ** e
    x = w / 2 * f(np.cos(vv), 0.35) * f(np.cos(uu), 0.35)
    y = d / 2 * f(np.cos(vv), 0.35) * f(np.sin(uu), 0.35)
    z = h / 2 * f(np.sin(vv), 0.6) + h / 2
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    idx = np.arange(nu * nv).reshape(nv, nu)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, dd = idx[1:], np.roll(idx[1:], -1, axis=1)
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, dd, c], -1).reshape(-1, 3)])
    return [_mesh(verts, tris, rgb)], (w, d, h), "pillow"


def book(rng: np.random.Generator):
    w, d, h = rng.uniform(0.13, 0.22), rng.uniform(0.19, 0.3), rng.uniform(0.015, 0.05)
    _, rgb = sample_color(rng, ("red", "blue", "green", "black", "white", "yellow", "orange", "purple", "brown"))
    parts = [
        _box((w / 2, d / 2, h / 2), (0, 0, h / 2), rgb),
        _box((w / 2 - 0.006, d / 2 - 0.006, h / 2 - 0.004), (0.005, 0, h / 2), (0.95, 0.93, 0.86)),  # pages
    ]
    return parts, (w, d, h), "book"


def keyboard(rng: np.random.Generator):
    w, d, h = rng.uniform(0.36, 0.46), rng.uniform(0.12, 0.16), rng.uniform(0.02, 0.035)
    _, rgb = sample_color(rng, ("black", "white", "grey"))
    keys = _shade(rgb, 0.8) if rgb[0] > 0.5 else _shade(rgb, 2.5)  # keys contrast with the body
    parts = [
        _box((w / 2, d / 2, h * 0.35), (0, 0, h * 0.35), rgb),
        _box((w / 2 - 0.01, d / 2 - 0.01, h * 0.15), (0, 0, h * 0.85), keys),
    ]
    return parts, (w, d, h), "keyboard"


def monitor(rng: np.random.Generator):
    w, screen_h = rng.uniform(0.45, 0.7), rng.uniform(0.28, 0.42)
    neck = rng.uniform(0.08, 0.15)
    _, rgb = sample_color(rng, ("black", "grey", "white"))
    base_w, base_d, panel_d = min(0.25, w * 0.45), rng.uniform(0.15, 0.22), rng.uniform(0.02, 0.05)
    h = 0.015 + neck + screen_h
    parts = [
        _box((base_w / 2, base_d / 2, 0.0075), (0, 0, 0.0075), rgb),
        _box((0.02, 0.015, neck / 2), (0, 0.02, 0.015 + neck / 2), rgb),
        _box((w / 2, panel_d / 2, screen_h / 2), (0, -0.01, 0.015 + neck + screen_h / 2), rgb),
        # the dark screen, flush with the panel's front
        _box(
            (w / 2 - 0.015, 0.002, screen_h / 2 - 0.015),
            (0, -0.01 - panel_d / 2 - 0.001, 0.015 + neck + screen_h / 2),
            (0.05, 0.06, 0.08),
        ),
    ]
    depth = max(base_d, panel_d + 0.02 + 0.004) + 0.01
    return parts, (w, depth, h), "monitor"
