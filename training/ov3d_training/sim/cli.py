"""``ov3d-train sim`` / ``python -m ov3d_training.sim``: render a set of simulated recordings.

Writes ``<out>/scene_0000`` ... (one rosbag2 directory with ``annotations.json`` each) and
``<out>/simulation.json`` (configuration and per-scene summary). Deterministic for a seed: scene
``i`` depends only on (seed, i), never on the number of workers or the scenes before it, so a run
can be extended with ``--start`` or resumed (finished scenes are kept unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from .recipes import ROOM_TYPES
from .recorder import RecordingConfig
from .sensor import SENSORS


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 240x180, got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"resolution {w}x{h} is too small")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = RecordingConfig()
    parser.add_argument("--scenes", type=int, default=100, help="number of scenes (default 100)")
    parser.add_argument("--start", type=int, default=0, help="index of the first scene (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default=defaults.storage)
    parser.add_argument(
        "--frames-per-scene",
        type=int,
        default=defaults.frames,
        help=f"camera frames per scene (default {defaults.frames})",
    )
    parser.add_argument(
        "--resolution",
        type=_resolution,
        default=(defaults.width, defaults.height),
        help=f"rendered depth/RGB size WxH (default {defaults.width}x{defaults.height})",
    )
    parser.add_argument(
        "--voxel", type=float, default=defaults.voxel, help=f"map voxel size in metres (default {defaults.voxel})"
    )
    parser.add_argument(
        "--publish-every",
        type=int,
        default=defaults.publish_every,
        help=f"frames between published map clouds (default {defaults.publish_every})",
    )
    parser.add_argument("--sensor", choices=sorted(SENSORS), default=defaults.sensor)
    parser.add_argument("--room-type", choices=ROOM_TYPES, default=None, help="all scenes of one room type")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="scenes rendered in parallel (one pybullet client each; default: all cores)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="processed model cache (default $OV3D_SIM_CACHE or ~/.cache/ov3d_ros/sweethome3d)",
    )
    parser.add_argument(
        "--furniture",
        type=Path,
        default=None,
        help="folder of the .sh3f libraries (default /usr/share/sweethome3d/furniture)",
    )
    parser.add_argument("--overwrite", action="store_true", help="re-render scenes that already exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def scene_dir(out: Path, index: int) -> Path:
    return Path(out) / f"scene_{index:04d}"


def _complete(path: Path) -> bool:
    return (path / "metadata.yaml").is_file() and (path / "annotations.json").is_file()


_LIBRARY = None


def _init_worker(cache, furniture) -> None:
    global _LIBRARY
    from .library import ModelLibrary

    _LIBRARY = ModelLibrary.build(cache, furniture)


def _run_one(task) -> dict:
    from .recorder import record_scene

    seed, index, out, config = task
    t = time.perf_counter()
    rec = record_scene(_LIBRARY, seed, index, scene_dir(out, index), config)
    return {
        "index": index,
        "path": rec.path.name,
        "room_type": rec.scene.room_type,
        "entities": len(rec.scene.entities),
        "points": len(rec.clouds[-1]) if rec.clouds else 0,
        "seconds": round(time.perf_counter() - t, 3),
    }


def main(args: argparse.Namespace) -> int:
    from .catalog import CatalogError
    from .library import ModelLibrary

    if args.scenes < 1:
        print("ov3d-train sim: --scenes must be >= 1", file=sys.stderr)
        return 2
    try:
        config = RecordingConfig(
            frames=args.frames_per_scene,
            width=args.resolution[0],
            height=args.resolution[1],
            voxel=args.voxel,
            publish_every=args.publish_every,
            sensor=args.sensor,
            storage=args.storage,
            room_type=args.room_type,
        )
    except ValueError as exc:
        print(f"ov3d-train sim: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, int(args.workers))
    summary_path = out / "simulation.json"
    previous = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    config_json = {k: getattr(config, k) for k in config.__dataclass_fields__}
    if (
        previous is not None
        and not args.overwrite
        and (previous.get("seed") != args.seed or previous.get("config") != config_json)
    ):
        print(
            f"ov3d-train sim: {out} holds scenes of another seed or configuration; "
            "choose another --out or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    try:
        # Process the furniture once, up front (in parallel), so workers only read the cache.
        ModelLibrary.build(args.cache, args.furniture, workers=workers, progress=not args.no_progress)
    except CatalogError as exc:
        print(f"ov3d-train sim: {exc}", file=sys.stderr)
        return 2
    indices = range(args.start, args.start + args.scenes)
    todo = [i for i in indices if args.overwrite or not _complete(scene_dir(out, i))]
    tasks = [(args.seed, i, out, config) for i in todo]
    results = []
    t_render = time.perf_counter()
    if workers == 1 or len(tasks) <= 1:
        _init_worker(args.cache, args.furniture)
        iterator = map(_run_one, tasks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(min(workers, len(tasks)), _init_worker, (args.cache, args.furniture))
        iterator = pool.imap(_run_one, tasks)
    if not args.no_progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(tasks), desc="simulating scenes", unit="scene")
    try:
        for result in iterator:
            results.append(result)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - t_render
    summary = {
        "generator": "ov3d_training.sim",
        "seed": args.seed,
        "config": config_json,
        "scenes": sorted(results, key=lambda r: r["index"]),
        "skipped_existing": len(indices) - len(todo),
        "workers": workers,
        "seconds": round(elapsed, 2),
        "scenes_per_minute": round(60.0 * len(results) / elapsed, 2) if results and elapsed > 0 else None,
    }
    if previous is not None and not args.overwrite:
        known = {s["index"]: s for s in previous.get("scenes", [])}
        known.update({s["index"]: s for s in summary["scenes"]})
        summary["scenes"] = [known[k] for k in sorted(known)]
    summary_path.write_text(json.dumps(summary, indent=2))
    report = {k: summary[k] for k in ("seconds", "scenes_per_minute", "skipped_existing", "workers")}
    report |= {"rendered": len(results), "out": str(out), "total_seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ov3d_training.sim",
        description="Render simulated indoor rosbag2 recordings (fused labelled map clouds, camera poses, "
        "entity annotations) from Sweet Home 3D furniture with pybullet.",
    )
    add_arguments(parser)
    return parser


def cli(argv: list[str] | None = None) -> int:
    return main(build_parser().parse_args(argv))
