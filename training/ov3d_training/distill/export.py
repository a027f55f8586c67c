"""The distilled student on disk, in the inference core's checkpoint format.

``ov3d_ros.core.checkpoint.save_checkpoint`` writes ``model.safetensors`` + ``model.json``
(architecture, voxel size, input features, text space, metrics, provenance, weights hash), so
``Segmenter.from_checkpoint(<dir>)`` loads the result directly.

Honesty of ``trained``: a student is marked trained only if its teacher was (a student distilled
from a random-init teacher -- the tests' plumbing runs -- holds meaningless weights, and the
Segmenter refuses it unless ``allow_untrained``) and it took at least one optimisation step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ov3d_ros.core.checkpoint import CheckpointError, CheckpointMetadata, TextSpace, read_metadata, save_checkpoint
from ov3d_ros.core.network import StudentNet

from ..data.sources import Source, generated_room_identity
from ..trainer.config import to_dict
from .config import DistillConfig
from .teacher import FrozenTeacher

LAST_DIR = "student"  # the deliverable: the student at the end of training
BEST_DIR = "student_best"  # the student with the best label-free validation objective


def student_metadata(
    student: StudentNet,
    *,
    teacher: FrozenTeacher,
    config: DistillConfig,
    voxel_size: float,
    step: int,
    finished: bool,
    metrics: dict[str, float],
    sources: list[str],
    device: str,
) -> CheckpointMetadata:
    t = teacher.metadata
    return CheckpointMetadata(
        architecture=student.config,
        text_space=TextSpace(t.text_space.encoder_id, t.text_space.dim, tuple(t.text_space.templates)),
        voxel_size=float(voxel_size),
        input_features=config.student.input_features,
        trained=bool(t.trained and step > 0),
        training_data={
            "method": "GeoPurify-style contrastive distillation of the affinity head + cosine distillation "
            "of the semantic head from an MPEC teacher",
            "sources": list(sources),
            # by identity, the generated rooms the student or its teacher learned from (calibration refuses them)
            "rooms": generated_rooms(list(sources) + [str(s) for s in t.training_data]),
            "teacher": teacher.describe(),
            "steps": int(step),
            "finished": bool(finished),
            "device": device,
        },
        metrics={k: float(v) for k, v in metrics.items()},
        extra={"recipe": to_dict(config)},
    )


def generated_rooms(sources: list[str]) -> list[str]:
    """The generated rooms among ``sources`` by identity (``generated_room_identity``), so that
    calibration can refuse them wherever they lie later."""
    found = (generated_room_identity(Source(Path(s), "bag" if Path(s).is_dir() else "file")) for s in sources)
    return list(dict.fromkeys(room for room in found if room is not None))  # in source order


def export_student(directory: Path, student: StudentNet, metadata: CheckpointMetadata) -> Path:
    return save_checkpoint(Path(directory), student, metadata)


def recorded_objective(directory: Path) -> float | None:
    """The validation objective stored with an exported student (None if absent or unreadable)."""
    directory = Path(directory)
    if not (directory / "model.json").is_file():
        return None
    try:
        value: Any = read_metadata(directory).metrics.get("val_objective")
    except (CheckpointError, TypeError, ValueError):  # a damaged best checkpoint is replaced by the next improvement
        return None
    return float(value) if value is not None else None
