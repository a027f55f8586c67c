"""Small labelled rooms for the MPEC/trainer tests: a floor, two walls and a few coloured objects,
with per-point instance labels and an annotation sidecar in the simulator's layout
(entity id -> category, captions, referrals). Written as rosbag2 recordings or npz scans.

Each object class has its own shape and colour, so a few training steps can learn to tell them
apart; sizes are small (a few thousand points) to keep the shared CI machine free.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ov3d_ros.io.bags import write_bag
from ov3d_ros.io.files import save_scan
from ov3d_ros.io.scan import Scan

# class -> (colour RGB, half extents (x, y, z) metres)
OBJECTS = {
    "table": ((200, 40, 40), (0.40, 0.30, 0.37)),
    "chair": ((40, 60, 220), (0.20, 0.20, 0.45)),
    "cabinet": ((40, 190, 60), (0.25, 0.20, 0.60)),
    "bed": ((230, 200, 40), (0.50, 0.70, 0.22)),
}
SPACING = 0.05


def _box_surface(center: np.ndarray, half: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    area = 8 * (half[0] * half[1] + half[1] * half[2] + half[0] * half[2])
    n = max(60, int(area / SPACING**2))
    face = rng.integers(0, 6, n)
    uv = rng.uniform(-1, 1, (n, 3))
    axis = face // 2
    sign = np.where(face % 2 == 0, -1.0, 1.0)
    uv[np.arange(n), axis] = sign
    pts = center + uv * half
    return pts[pts[:, 2] > 0.005]  # no bottom face (it sits on the floor)


def make_room(seed: int, size: float = 2.4) -> tuple[Scan, dict]:
    rng = np.random.default_rng(seed)
    parts, colors, instances, entities = [], [], [], {}
    g = np.arange(0, size, SPACING)
    fx, fy = np.meshgrid(g, g, indexing="ij")
    floor = np.stack([fx.ravel(), fy.ravel(), np.zeros(fx.size)], 1)
    wz = np.arange(0, 1.2, SPACING)
    wx, wzz = np.meshgrid(g, wz, indexing="ij")
    wall_a = np.stack([wx.ravel(), np.zeros(wx.size), wzz.ravel()], 1)
    wall_b = np.stack([np.zeros(wx.size), wx.ravel(), wzz.ravel()], 1)
    for inst, (pts, name, rgb) in enumerate(
        [(floor, "floor", (150, 150, 150)), (wall_a, "wall", (235, 230, 220)), (wall_b, "wall", (235, 230, 220))],
        start=1,
    ):
        parts.append(pts + rng.normal(0, 0.003, pts.shape))
        colors.append(np.tile(rgb, (len(pts), 1)))
        instances.append(np.full(len(pts), inst))
        entities[str(inst)] = {"category": name, "captions": [f"the {name} of the room"], "referrals": []}
    names = list(OBJECTS)
    chosen = rng.permutation(len(names))[:3]
    slots = [(0.6, 0.7), (1.7, 0.7), (1.2, 1.8)]
    for k, (cls_index, slot) in enumerate(zip(chosen, slots)):
        name = names[cls_index]
        rgb, half = OBJECTS[name]
        center = np.array([slot[0] + rng.uniform(-0.1, 0.1), slot[1] + rng.uniform(-0.1, 0.1), half[2]])
        pts = _box_surface(center, np.array(half), rng)
        inst = 4 + k
        parts.append(pts)
        colors.append(np.clip(np.array(rgb) + rng.normal(0, 8, (len(pts), 3)), 0, 255))
        instances.append(np.full(len(pts), inst))
        color_word = {"table": "red", "chair": "blue", "cabinet": "green", "bed": "yellow"}[name]
        entities[str(inst)] = {
            "category": name,
            "captions": [f"a {color_word} {name}"],
            "referrals": [f"the {name} near the {'wall' if slot[1] < 1.0 else 'middle of the room'}"],
        }
    points = np.concatenate(parts).astype(np.float32)
    scan = Scan(
        points,
        colors=np.concatenate(colors).astype(np.uint8),
        labels=np.zeros(len(points), np.int32),
        instances=np.concatenate(instances).astype(np.int32),
        frame_id="map",
        stamp_ns=1_000_000_000 + seed,
    )
    return scan, {"entities": entities}


def write_recordings(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` rosbag2 recordings (two growing map clouds each; the last is complete) with sidecars."""
    out = []
    for i in range(count):
        scan, annotations = make_room(seed + i)
        half = scan.subset(np.arange(len(scan)) % 2 == 0)
        half.stamp_ns = scan.stamp_ns - 1000
        path = folder / f"room_{i:02d}"
        write_bag(path, [half, scan], annotations=annotations)
        out.append(path)
    return out


def write_npz_scans(folder: Path, count: int, seed: int = 100, annotated: bool = True) -> list[Path]:
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scan, annotations = make_room(seed + i)
        path = folder / f"room_{i:02d}.npz"
        save_scan(scan, path)
        if annotated:
            (folder / f"room_{i:02d}.annotations.json").write_text(json.dumps(annotations), encoding="utf-8")
        out.append(path)
    return out
