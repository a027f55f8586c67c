"""A robot-like camera path through the room's free space.

The robot (radius 0.3 m) drives a loop through 3-5 waypoints spread over the largest free region
of the floor (shortest grid paths between them), carrying the camera at one height between 0.4
and 1.6 m. The camera looks across the room (towards its centre) and sweeps left and right (a mapping
robot turning its head), pitched down more the higher it is. A room too cluttered to drive in gets
a turn on the spot at its freest point.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .camera import look_at_pose
from .scene import Scene

GRID = 0.05
ROBOT_RADIUS = 0.3


def occupancy(scene: Scene, grid: float = GRID) -> np.ndarray:
    """(nx, ny) bool: cells a robot base cannot be on (anything reaching below 1 m, walls)."""
    W, L, _ = scene.size
    nx, ny = math.ceil(W / grid), math.ceil(L / grid)
    blocked = np.zeros((nx, ny), dtype=bool)
    for e in scene.entities:
        if e.mount == "structure":
            continue
        b = e.box
        if b.lo[2] > 1.0:
            continue
        i0, i1 = int(np.floor(b.lo[0] / grid)), int(np.ceil(b.hi[0] / grid))
        j0, j1 = int(np.floor(b.lo[1] / grid)), int(np.ceil(b.hi[1] / grid))
        blocked[max(i0, 0) : max(i1, 0), max(j0, 0) : max(j1, 0)] = True
    blocked[0, :] = blocked[-1, :] = blocked[:, 0] = blocked[:, -1] = True
    return blocked


def _bfs_path(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    nx, ny = free.shape
    prev = -np.ones((nx, ny, 2), dtype=np.int32)
    seen = np.zeros_like(free)
    seen[start] = True
    queue = deque([start])
    steps = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)]
    while queue:
        cur = queue.popleft()
        if cur == goal:
            break
        for dx, dy in steps:
            nxt = (cur[0] + dx, cur[1] + dy)
            if 0 <= nxt[0] < nx and 0 <= nxt[1] < ny and free[nxt] and not seen[nxt]:
                seen[nxt] = True
                prev[nxt] = cur
                queue.append(nxt)
    if not seen[goal]:
        return [start]
    path = [goal]
    while path[-1] != start:
        path.append(tuple(int(v) for v in prev[path[-1]]))
    return path[::-1]


def _resample(points: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-9:
        return np.repeat(points[:1], n, axis=0)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, k]) for k in range(points.shape[1])], axis=1)


def plan_trajectory(
    scene: Scene, rng: np.random.Generator, frames: int, height: float | None = None
) -> list[np.ndarray]:
    """``frames`` camera poses (optical frame, camera-to-world)."""
    from scipy import ndimage

    height = float(rng.uniform(0.4, 1.6)) if height is None else float(height)
    blocked = occupancy(scene)
    clearance = ndimage.distance_transform_edt(~blocked) * GRID
    free = clearance >= ROBOT_RADIUS
    labels, count = ndimage.label(free, structure=np.ones((3, 3)))
    base_pitch = -math.radians(5.0 + 20.0 * (height - 0.4) / 1.2 + float(rng.uniform(0, 8)))
    if count == 0:
        # No room to drive: turn on the spot at the freest cell.
        i, j = np.unravel_index(int(np.argmax(clearance)), clearance.shape)
        center = np.array([(i + 0.5) * GRID, (j + 0.5) * GRID])
        yaws = float(rng.uniform(0, 2 * math.pi)) + np.linspace(0, 2 * math.pi, frames, endpoint=False)
        return [look_at_pose([center[0], center[1], height], float(y), base_pitch) for y in yaws]
    sizes = ndimage.sum(free, labels, index=np.arange(1, count + 1))
    region = labels == (int(np.argmax(sizes)) + 1)
    cells = np.argwhere(region)
    # Farthest-point waypoints, visited in angular order around their centroid (a loop).
    k = int(min(len(cells), rng.integers(3, 6)))
    chosen = [int(rng.integers(len(cells)))]
    dist = np.linalg.norm(cells - cells[chosen[0]], axis=1)
    for _ in range(k - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(cells - cells[chosen[-1]], axis=1))
    way = cells[chosen].astype(float)
    center = way.mean(axis=0)
    way = way[np.argsort(np.arctan2(way[:, 1] - center[1], way[:, 0] - center[0]))]
    # Prefer cells far from obstacles: walk the clearance-weighted free region by BFS.
    path: list[tuple[int, int]] = []
    for a, b in zip(way, np.roll(way, -1, axis=0)):
        leg = _bfs_path(region, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])))
        path.extend(leg if not path else leg[1:])
    xy = (np.asarray(path, dtype=float) + 0.5) * GRID
    if len(xy) < 2 or np.linalg.norm(np.ptp(xy, axis=0)) < 0.2:
        yaws = float(rng.uniform(0, 2 * math.pi)) + np.linspace(0, 2 * math.pi, frames, endpoint=False)
        return [look_at_pose([xy[0, 0], xy[0, 1], height], float(y), base_pitch) for y in yaws]
    # Smooth the grid path a little so headings do not jump between the 8 grid directions.
    kernel = np.ones(7) / 7.0
    padded = np.concatenate([xy[-3:], xy, xy[:3]])
    smooth = np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(2)], axis=1)
    positions = _resample(smooth, frames + 1)
    positions = positions[:-1]
    # Look across the room (towards its centre) rather than along the path: furniture stands
    # along the walls, and a loop looking inwards sees every wall from a distance.
    W, L, _ = scene.size
    to_center = np.array([W / 2, L / 2]) - positions
    yaw_path = np.unwrap(np.arctan2(to_center[:, 1], to_center[:, 0]))
    t = np.linspace(0.0, 1.0, frames, endpoint=False)
    cycles = float(rng.uniform(2.0, 4.0))
    sweep = math.radians(float(rng.uniform(45, 75))) * np.sin(2 * math.pi * cycles * t + float(rng.uniform(0, 6.28)))
    pitch = base_pitch + math.radians(6.0) * np.sin(2 * math.pi * 1.3 * t)
    poses = []
    for i in range(frames):
        eye = [positions[i, 0], positions[i, 1], height]
        poses.append(look_at_pose(eye, float(yaw_path[i] + sweep[i]), float(pitch[i])))
    return poses
