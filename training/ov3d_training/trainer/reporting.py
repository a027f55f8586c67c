"""Run a Trainer for a command line and map its outcome to exit codes and one summary line."""

from __future__ import annotations

import sys

from .distributed import shutdown_distributed
from .loop import Trainer, TrainingError


def fit_and_report(
    trainer: Trainer,
    *,
    command: str,
    artefact: str,
    user_errors: tuple[type[BaseException], ...],
    is_main: bool,
    stop_at_step: int | None = None,
    digits: int = 2,
) -> int:
    """0 done or stopped on request, 1 training failed (e.g. diverged), 2 bad recipe or data."""
    completed = False
    try:
        result = trainer.fit(stop_at_step=stop_at_step)
        completed = True
    except user_errors as exc:
        print(f"ov3d-train {command}: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"ov3d-train {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed(orderly=completed)
    if is_main:
        state = "finished" if result.finished else "stopped"
        if result.stopped_by == "time budget":
            state = f"finished its time budget ({result.train_seconds / 60:.1f} min of training)"
        print(
            f"{command} {state} at step {result.step} in {result.seconds:.1f} s on {result.device} x{result.world_size}; "
            f"run: {result.run_dir}" + (f"; {artefact}: {result.exported}" if result.exported else "")
        )
        if result.validation:
            print("validation: " + ", ".join(f"{k} {v:.{digits}f}" for k, v in result.validation.items()))
    return 0
