"""``ov3d-train distill``: distil the robot's student from a trained MPEC teacher.

    ov3d-train distill --teacher MPEC_RUN --data DIR_OR_BAGS... --out RUN_DIR [--config FILE.yaml]
    ov3d-train distill --out RUN_DIR --resume

``--config`` defaults to ``training/configs/distill_default.yaml`` of the source tree. The recipe, the data list and the teacher
(path and weights hash) are written into the run directory; ``--resume`` continues from the
latest checkpoint with exactly those, and refuses a teacher whose weights changed.

Exit codes: 0 done, 1 training error, 2 bad command line / configuration / data / teacher.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

RUN_CONFIG = "config.yaml"
RUN_DATA = "data.yaml"
RUN_TEACHER = "teacher.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher",
        type=Path,
        default=None,
        help="the MPEC teacher: '<mpec run>/teacher' or the MPEC run directory (optional with --resume)",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="rosbag2 recordings, npz/ply/pcd scans, or folders of them (optional with --resume)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs, curves, student/)")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="recipe YAML (default: training/configs/distill_default.yaml; with --resume: the run's own)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set trainer.steps=2000 (repeatable)",
    )
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="checkpoint and exit after this step (time-sliced jobs; --resume continues)",
    )


def main(args: argparse.Namespace) -> int:
    from ov3d_ros.core.checkpoint import CheckpointError

    from ..data.sources import EvaluationDataError, NoTrainingDataError
    from ..trainer.config import ConfigError, dump_yaml, to_dict
    from ..trainer.loop import Trainer
    from ..trainer.reporting import fit_and_report
    from .scenes import ScanTooSmallError
    from .task import DistillTask

    run_dir: Path = args.out
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes the run's files
    try:
        config, data, teacher_dir, teacher_sha = _resolve_inputs(args, run_dir, is_main)
    except (ConfigError, CheckpointError, OSError, ValueError) as exc:
        print(f"ov3d-train distill: {exc}", file=sys.stderr)
        return 2

    if is_main and not args.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, run_dir / RUN_CONFIG)
        (run_dir / RUN_DATA).write_text(yaml.safe_dump([str(Path(d).resolve()) for d in data]), encoding="utf-8")
        (run_dir / RUN_TEACHER).write_text(
            yaml.safe_dump({"path": str(teacher_dir), "weights_sha256": teacher_sha}), encoding="utf-8"
        )
    task = DistillTask(config, data, teacher_dir)
    record = {"recipe": to_dict(config), "teacher_sha256": teacher_sha}
    trainer = Trainer(
        task, config.trainer, config.optim, seed=config.seed, run_dir=run_dir, resume=args.resume, config_record=record
    )
    return fit_and_report(
        trainer,
        command="distill",
        artefact="student",
        is_main=is_main,
        stop_at_step=args.stop_at_step,
        user_errors=(EvaluationDataError, NoTrainingDataError, ConfigError, CheckpointError, ScanTooSmallError),
        digits=3,
    )


def _resolve_inputs(args: argparse.Namespace, run_dir: Path, is_main: bool):
    """(config, data, teacher directory, teacher weights sha256) for a new or resumed run."""
    from ..trainer.config import ConfigError, load_yaml, to_dict
    from .config import default_recipe_path
    from .teacher import FrozenTeacher, resolve_teacher_dir

    saved_config, saved_data, saved_teacher = run_dir / RUN_CONFIG, run_dir / RUN_DATA, run_dir / RUN_TEACHER
    if args.resume:
        if not saved_config.is_file() or not saved_teacher.is_file():
            raise ConfigError(
                f"--resume: {run_dir} has no {RUN_CONFIG} / {RUN_TEACHER} (not a distillation run directory?)"
            )
        raw = load_yaml(saved_config)
        if args.config is not None:
            given = to_dict(_config(apply_overrides(load_yaml(args.config), args.overrides)))
            if given != to_dict(_config(raw)):
                raise ConfigError(
                    f"--resume: {args.config} differs from the run's {saved_config}; resume without --config"
                )
        elif args.overrides:
            raise ConfigError("--resume continues the run's own recipe; --set is not allowed")
        data = args.data or yaml.safe_load(saved_data.read_text(encoding="utf-8"))
        recorded = yaml.safe_load(saved_teacher.read_text(encoding="utf-8"))
        teacher_dir = resolve_teacher_dir(args.teacher or recorded["path"])
        sha = _teacher_sha(teacher_dir)
        if sha != recorded["weights_sha256"]:
            raise ConfigError(
                f"--resume: the teacher at {teacher_dir} has weights {sha[:12]}..., but the run was distilled from "
                f"{recorded['weights_sha256'][:12]}...; resume with the original teacher"
            )
    else:
        if args.teacher is None or not args.data:
            raise ConfigError("distill needs --teacher and --data (or --resume with an existing --out)")
        if is_main and (saved_config.exists() or saved_teacher.exists()):
            raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
        path = args.config if args.config is not None else default_recipe_path()
        if not path.is_file():
            raise ConfigError(f"recipe {path} not found; pass --config (e.g. training/configs/distill_default.yaml)")
        raw = apply_overrides(load_yaml(path), args.overrides)
        data = args.data
        teacher_dir = resolve_teacher_dir(args.teacher)
        FrozenTeacher.load(teacher_dir, "cpu")  # fail now, with the loader's message, not after preparing data
        sha = _teacher_sha(teacher_dir)
    return _config(raw), data, teacher_dir, sha


def _config(raw: dict):
    """The recipe with the student's architecture resolved (``null`` = inference default), so the
    run's config.yaml pins it."""
    from dataclasses import replace

    from ..trainer.config import from_dict
    from .config import DistillConfig

    config = from_dict(DistillConfig, raw)
    return replace(config, student=config.student.resolved())


def _teacher_sha(directory: Path) -> str:
    import json

    from ..mpec.export import METADATA_FILE

    return str(json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))["weights_sha256"])


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """``--set a.b=value`` (YAML value) into the raw recipe mapping, as ``ov3d-train mpec`` does."""
    from ..cli import _apply_overrides

    return _apply_overrides(raw, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov3d-train distill", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
