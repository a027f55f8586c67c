"""A cut-away picture of a generated scene: rendered colours beside the entity segmentation.

``python -m ov3d_training.sim.preview --seed 1 --index 0 --room-type "living room" --out docs/images/sim_scene.png``
draws the scene of the packaged demo recording.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from .camera import Intrinsics, look_at_pose, render
from .recipes import ROOM_TYPES
from .scene import Scene
from .world import build_world

STRUCTURE = ("floor", "ceiling", "wall")


def entity_colors(scene: Scene) -> np.ndarray:
    """(E + 1, 3) uint8: a distinct colour per entity (greys for floor and walls), black for none."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    table = np.zeros((len(scene.entities) + 1, 3), dtype=np.uint8)
    k = 0
    for e in scene.entities:
        if e.category in STRUCTURE:
            grey = {"floor": 150, "ceiling": 230}.get(e.category, 190 + 8 * (e.id % 4))
            table[e.id] = grey
        else:
            table[e.id] = (np.asarray(cmap(k % 20)[:3]) * 255).astype(np.uint8)
            k += 1
    return table


CORNERS = {  # corner -> (the two walls that meet there, camera position as a fraction of W and L)
    "south-west": ((0, 3), (-0.35, -0.35)),
    "south-east": ((0, 1), (1.35, -0.35)),
    "north-east": ((1, 2), (1.35, 1.35)),
    "north-west": ((2, 3), (-0.35, 1.35)),
}


def best_corner(scene: Scene) -> str:
    """The corner whose two walls carry the fewest things (they are cut away in the view)."""

    def load(walls):
        return sum(1 for e in scene.entities if e.wall in walls and e.mount != "structure")

    return min(CORNERS, key=lambda c: (load(CORNERS[c][0]), c))


def cutaway_view(scene: Scene, width: int = 640, height: int = 480, corner: str | None = None):
    """(rgb, entity id image) from outside one corner of the room (the freest by default), with the
    ceiling, the two walls meeting there and everything hung on or set in them removed."""
    W, L, H = scene.size
    walls, (fx, fy) = CORNERS[corner or best_corner(scene)]
    hide = {e.id for e in scene.entities if e.category == "ceiling"}
    hide |= {scene.wall_entity[w] for w in walls}
    hide |= {e.id for e in scene.entities if e.mount in ("wall", "opening") and e.wall in walls}
    world = build_world(scene, exclude=frozenset(hide))
    try:
        eye = np.array([fx * W, fy * L, H + 1.6])
        target = np.array([W / 2, L / 2, 0.3])
        d = target - eye
        yaw = math.atan2(d[1], d[0])
        pitch = math.atan2(d[2], math.hypot(d[0], d[1]))
        intr = Intrinsics.from_fov(width, height, 60.0, near=0.1, far=30.0)
        frame = render(world.client, intr, look_at_pose(eye, yaw, pitch))
        lookup = world.entity_lookup()
        ids = np.where(frame.body >= 0, lookup[np.maximum(frame.body, 0)], 0)
    finally:
        world.close()
    return frame.rgb, ids


def save_preview(scene: Scene, path: str | Path, width: int = 640, height: int = 480, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rgb, ids = cutaway_view(scene, width, height)
    colors = entity_colors(scene)
    seg = colors[ids]
    seg[ids == 0] = 255
    fig, axes = plt.subplots(1, 2, figsize=(2 * width / 100 + 2.6, height / 100 + 0.6), dpi=100)
    for ax, img, name in zip(axes, (rgb, seg), ("rendered colours", "entities (label instance part)")):
        ax.imshow(img)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    visible = [e for e in scene.entities if e.category not in STRUCTURE and (ids == e.id).any()]
    handles = [Patch(color=colors[e.id] / 255.0, label=f"{e.id}: {e.noun} ({e.category})") for e in visible]
    axes[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from .layout import generate_scene
    from .library import ModelLibrary
    from .recorder import room_type_for, scene_rngs

    parser = argparse.ArgumentParser(prog="python -m ov3d_training.sim.preview", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument(
        "--room-type",
        choices=ROOM_TYPES,
        default=None,
        help="as the recorder's --room-type (default: the type the seed and index give)",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    library = ModelLibrary.build(args.cache)
    room_type = args.room_type or room_type_for(args.seed, args.index)
    scene = generate_scene(library, scene_rngs(args.seed, args.index)[0], room_type)
    title = f"seed {args.seed}, scene {args.index}: {scene.room_type}, {scene.size[0]:.1f} x {scene.size[1]:.1f} m"
    print(save_preview(scene, args.out, title=title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
