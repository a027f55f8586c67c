"""``ov3d-train``: the training package's command line.

    ov3d-train sim    ...                                   simulated recordings (see docs/simulation.md)
    ov3d-train mpec   --config FILE.yaml --data DIR_OR_BAGS... --out RUN_DIR [--resume]
    ov3d-train distill --teacher MPEC_RUN --data ... --out RUN_DIR   (see ov3d_training.distill.cli)
    ov3d-train calibrate --student CKPT --data HELD_OUT_SIM... [--install]  GGP tau / T per model (ov3d_training.calibrate.cli)
    ov3d-train calibrate-query --student CKPT --data HELD_OUT_SCANS... [--install]  the one-query rule (calibrate.query.cli)
    ov3d-train report --out DIR [--student CKPT] [--teacher DIR]     accuracy report (ov3d_training.report.cli)

Data-parallel: the same command under torchrun, e.g.
``torchrun --nproc_per_node 4 -m ov3d_training.cli mpec --config ... --data ... --out ...``
(``trainer.batch_size`` is the global batch; NCCL on CUDA, gloo on CPU).

Exit codes: 0 done, 1 training error, 2 bad command line / configuration / data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

MODULE_OF = {
    "scannet-rooms": "scannet",
    "calibrate-query": "calibrate.query",
}  # subcommand -> its package, where the names differ


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``sim`` and ``distill`` get their arguments (an import of their modules, which
    pulls in pybullet etc.) only when ``command`` names them."""
    parser = argparse.ArgumentParser(prog="ov3d-train", description="Train the ov3d_ros networks.")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{sim,scannet-rooms,mpec,distill,calibrate,calibrate-query,report}"
    )

    sim = sub.add_parser("sim", help="render simulated rosbag2 recordings with annotations")
    if command == "sim":
        _add_delegated_arguments(sim, "sim")

    rooms = sub.add_parser(
        "scannet-rooms", help="real labelled ScanNet scans -> training/validation folders with texts"
    )
    if command == "scannet-rooms":
        _add_delegated_arguments(rooms, "scannet")

    mpec = sub.add_parser(
        "mpec",
        help="MPEC pretraining of the teacher (masked point-entity contrast)",
        description="Masked Point-Entity Contrast pretraining (arXiv 2504.19500) of the SparseUNet teacher.",
    )
    mpec.add_argument(
        "--config",
        type=Path,
        help="recipe YAML (e.g. training/configs/mpec_default.yaml); "
        "optional with --resume (the run's own config.yaml is used)",
    )
    mpec.add_argument(
        "--data", nargs="+", default=None, help="rosbag2 recordings, npz/ply/pcd scans, or folders of them"
    )
    mpec.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs, curves, teacher/)")
    mpec.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    mpec.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set trainer.steps=2000 (repeatable)",
    )
    mpec.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="checkpoint and exit after this step (time-sliced jobs; --resume continues)",
    )

    distill = sub.add_parser("distill", help="distil the robot's student from the MPEC teacher")
    if command == "distill":
        _add_delegated_arguments(distill, "distill")

    calibrate = sub.add_parser("calibrate", help="pick GGP's tau and T for a student on held-out simulated rooms")
    if command == "calibrate":
        _add_delegated_arguments(calibrate, "calibrate")

    calibrate_query = sub.add_parser(
        "calibrate-query", help="pick the one-query rule (vocabulary) for a student on held-out scans"
    )
    if command == "calibrate-query":
        _add_delegated_arguments(calibrate_query, "calibrate.query")

    report = sub.add_parser("report", help="accuracy report of a student on the real scans (tables, plots, renders)")
    if command == "report":
        _add_delegated_arguments(report, "report")
    return parser


def _add_delegated_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of ``ov3d_training.<command>.cli`` (imported here, i.e. only when parsing)."""
    import importlib

    try:
        module = importlib.import_module(f".{command}.cli", __package__)
    except ImportError as exc:
        parser.set_defaults(_missing=f"{type(exc).__name__}: {exc}")
        parser.add_argument("args", nargs=argparse.REMAINDER)
        return
    module.add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    # spconv 2.3 uses torch.cuda.amp decorators that torch deprecates; noise, not a problem of the run
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.custom_(fwd|bwd).*", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    if args.command == "mpec":
        return run_mpec(args)
    if getattr(args, "_missing", None):
        print(
            f"ov3d-train {args.command}: ov3d_training.{args.command}.cli cannot be imported ({args._missing})",
            file=sys.stderr,
        )
        return 2
    import importlib

    module = importlib.import_module(f".{MODULE_OF.get(args.command, args.command)}.cli", __package__)
    return int(module.main(args) or 0)


def run_mpec(args: argparse.Namespace) -> int:
    import os

    from .data.sources import EvaluationDataError, NoTrainingDataError
    from .mpec.config import MPECConfig
    from .mpec.task import MPECTask
    from .trainer.config import ConfigError, dump_yaml, from_dict, load_yaml, to_dict
    from .trainer.loop import Trainer
    from .trainer.reporting import fit_and_report

    run_dir: Path = args.out
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes the run's files
    saved_config = run_dir / "config.yaml"
    saved_data = run_dir / "data.yaml"
    try:
        if args.resume:
            if not saved_config.is_file():
                raise ConfigError(f"--resume: {run_dir} has no config.yaml (not a run directory?)")
            raw = load_yaml(saved_config)
            if args.config is not None:
                given = to_dict(from_dict(MPECConfig, _apply_overrides(load_yaml(args.config), args.overrides)))
                if given != to_dict(from_dict(MPECConfig, raw)):
                    raise ConfigError(
                        f"--resume: {args.config} differs from the run's {saved_config}; resume without --config"
                    )
            elif args.overrides:
                raise ConfigError("--resume continues the run's own recipe; --set is not allowed")
            data = args.data or yaml.safe_load(saved_data.read_text(encoding="utf-8"))
        else:
            if args.config is None or not args.data:
                raise ConfigError("mpec needs --config and --data (or --resume with an existing --out)")
            if is_main and saved_config.exists():
                raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
            raw = _apply_overrides(load_yaml(args.config), args.overrides)
            data = args.data
        config = from_dict(MPECConfig, raw)
    except (ConfigError, OSError) as exc:
        print(f"ov3d-train mpec: {exc}", file=sys.stderr)
        return 2

    if is_main and not args.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, saved_config)
        saved_data.write_text(yaml.safe_dump([str(Path(d).resolve()) for d in data]), encoding="utf-8")
    task = MPECTask(config, data)
    trainer = Trainer(
        task,
        config.trainer,
        config.optim,
        seed=config.seed,
        run_dir=run_dir,
        resume=args.resume,
        config_record=to_dict(config),
    )
    return fit_and_report(
        trainer,
        command="mpec",
        artefact="teacher",
        is_main=is_main,
        stop_at_step=args.stop_at_step,
        user_errors=(EvaluationDataError, NoTrainingDataError, ConfigError),
    )


def _apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    from .trainer.config import ConfigError

    raw = dict(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.steps=2000")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


if __name__ == "__main__":
    sys.exit(main())
