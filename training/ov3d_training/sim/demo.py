"""The small packaged recording the node's demo plays (``ov3d_ros/src/ov3d_ros/data/demo_scene``).

Regenerate with ``python -m ov3d_training.sim.demo`` (deterministic; quick once the furniture
cache exists, as processing the furniture models is the slow first step, see
:class:`~.library.ModelLibrary`). It is a furnished living room seen by a Kinect-like camera: two
fused map clouds at 3 cm, the camera poses, and the annotation sidecar, in MCAP -- small enough to
ship inside the package (few frames at low resolution); the command prints the recording's size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .library import ModelLibrary
from .recorder import RecordingConfig, record_scene

DEMO_SEED = 1
DEMO_INDEX = 0
DEMO_CONFIG = RecordingConfig(
    frames=30,
    width=200,
    height=150,
    voxel=0.03,
    publish_every=15,
    sensor="kinect",
    storage="mcap",
    room_type="living room",
)


def default_demo_dir() -> Path:
    import ov3d_ros

    return Path(ov3d_ros.__file__).resolve().parent / "data" / "demo_scene"


def make_demo_recording(
    out_dir: str | Path | None = None, cache_dir: Path | None = None, furniture_dir: Path | None = None
) -> Path:
    """Write the demo recording to ``out_dir`` (default: the package's data/demo_scene)."""
    out = Path(out_dir) if out_dir is not None else default_demo_dir()
    library = ModelLibrary.build(cache_dir, furniture_dir)
    return record_scene(library, DEMO_SEED, DEMO_INDEX, out, DEMO_CONFIG).path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ov3d_training.sim.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output bag folder (default: the packaged one)")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    path = make_demo_recording(args.out, args.cache)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"demo recording: {path} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
