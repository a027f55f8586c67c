"""Distillation as a :class:`~ov3d_training.trainer.loop.TrainingTask`: the shared loop does the rest
(seeding, AdamW + schedule, AMP, DDP, logs, plots, atomic checkpoints, exact resume).

``prepare`` (every process; rank 0 first) loads the frozen teacher onto the process's device and,
on rank 0, finds and prepares the scans and writes ``prepared.json``, which the other processes
read; rank 0 alone loads the text encoder (validation class names) and runs validation.

Outputs in the run directory, besides the shared loop's checkpoints/logs/curves:

* ``student/``: the student at the end of training (``ov3d_ros.core.checkpoint`` format);
* ``student_best/``: the student with the lowest label-free validation objective so far
  (written at each validation that improves it; see :mod:`.validate`);
* ``teacher_cache/``: float16 teacher features of deterministic views (``teacher_cache: true``
  and ``data.augment: null`` only).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ov3d_ros.core.network import StudentNet

from ..data.sources import discover_sources, evaluation_dir, repeat_each, source_repeats
from ..trainer.config import ConfigError
from ..trainer.distributed import DistInfo
from ..trainer.loop import StepOutput
from .config import DistillConfig
from .dataset import DistillBatch, DistillDataset, collate_items
from .export import BEST_DIR, LAST_DIR, export_student, recorded_objective, student_metadata
from .objective import METRIC_NAMES, DistillationObjective, batch_sparse_tensor
from .scenes import prepare_scenes
from .teacher import FrozenTeacher, TeacherFeatureCache, TeacherOutput, round_half
from .validate import DistillValidator

PREPARED_FILE = "prepared.json"
CACHE_DIR = "teacher_cache"
DEFAULT_EVALUATION_SCAN = "scene0000_00.npz"


class DistillTask:
    name = "distill"
    metric_names = METRIC_NAMES

    def __init__(self, config: DistillConfig, data: Sequence[str | Path], teacher: str | Path) -> None:
        self.config = replace(config, student=config.student.resolved())
        self.data = [str(d) for d in data]
        self.teacher_path = Path(teacher)
        self.teacher: FrozenTeacher | None = None
        self.voxel_size: float | None = None
        self.scene_files: list[Path] = []
        self.sources: list[str] = []
        self.feature_cache: TeacherFeatureCache | None = None
        self.validator: DistillValidator | None = None
        self.best_objective: float | None = None
        self.last_validation: dict[str, float] = {}
        self.device_name = "cpu"
        self.run_dir: Path | None = None

    # --------------------------------------------------------------------------- prepare
    def prepare(self, info: DistInfo, run_dir: Path) -> None:
        cfg = self.config
        self.run_dir = Path(run_dir)
        self.teacher = FrozenTeacher.load(self.teacher_path, info.device)
        self.voxel_size = self._voxel_size()
        self.device_name = _describe_device(info.device)
        record = self.run_dir / PREPARED_FILE
        if info.is_main:
            sources = discover_sources(self.data)
            cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else self.run_dir / "cache"
            needs_normals = "normals" in cfg.student.input_features or "normals" in self.teacher.input_features
            prepared = prepare_scenes(
                sources,
                cache_dir,
                self.voxel_size,
                with_normals=needs_normals,
                normals_k=cfg.data.normals_k,
                min_voxels=cfg.data.min_voxels,
                progress=cfg.trainer.progress,
            )
            self.scene_files = repeat_each(prepared, source_repeats(self.data, sources))
            self.sources = [str(s.path) for s in sources]
            record.write_text(
                json.dumps(
                    {
                        "sources": self.sources,
                        "scene_files": [str(p) for p in self.scene_files],
                        "teacher": str(self.teacher.directory),
                        "teacher_sha256": self.teacher.weights_sha256,
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
            self.validator = self._validator()
            self.best_objective = recorded_objective(self.run_dir / BEST_DIR)
        else:
            prepared = json.loads(record.read_text(encoding="utf-8"))
            self.sources = list(prepared["sources"])
            self.scene_files = [Path(p) for p in prepared["scene_files"]]
        if cfg.teacher_cache and cfg.data.augment is None:
            space = cfg.pairs.teacher_space
            self.feature_cache = TeacherFeatureCache(
                self.run_dir / CACHE_DIR / f"{self.teacher.weights_sha256[:16]}_{space}"
            )

    def _voxel_size(self) -> float:
        teacher_size = float(self.teacher.metadata.voxel_size)
        wanted = self.config.data.voxel_size
        if wanted is not None and abs(float(wanted) - teacher_size) > 1e-9:
            raise ConfigError(
                f"data.voxel_size {wanted} differs from the teacher's {teacher_size}: the teacher must see the voxels it "
                "was trained on; leave data.voxel_size null"
            )
        return teacher_size

    def _validator(self) -> DistillValidator | None:
        cfg = self.config
        if not cfg.validation.enabled:
            return None
        path = Path(cfg.validation.scan) if cfg.validation.scan else evaluation_dir() / DEFAULT_EVALUATION_SCAN
        if not path.is_file():
            warnings.warn(
                f"validation scan {path} not found; distilling without validation", RuntimeWarning, stacklevel=2
            )
            return None
        from ov3d_ros.core.text import load_text_encoder
        from ov3d_ros.eval.scannet20 import CLASS_NAMES

        space = self.teacher.metadata.text_space
        encoder = load_text_encoder(
            space.encoder_id,
            weights_path=self.teacher.metadata.architecture.text_weights,
            templates=space.templates,
            device="cpu",
        )
        if int(encoder.dim) != self.teacher.text_dim:
            raise ConfigError(
                f"text encoder {space.encoder_id!r} is {encoder.dim}-d but the teacher's adapter is {self.teacher.text_dim}-d"
            )
        return DistillValidator(
            path,
            cfg.validation,
            self.voxel_size,
            cfg.student.input_features,
            self.teacher,
            encoder.encode(list(CLASS_NAMES)),
            cfg.pairs,
            cfg.loss,
        )

    # ------------------------------------------------------------------------------ data
    def train_dataset(self) -> DistillDataset:
        cfg = self.config
        return DistillDataset(
            self.scene_files,
            self.voxel_size,
            cfg.data,
            cfg.pairs,
            cfg.loss,
            cfg.student.input_features,
            self.teacher.input_features,
            cfg.seed,
        )

    def collate(self, items) -> DistillBatch:
        return collate_items(items)

    # ----------------------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError("DistillTask.build_model before prepare")
        student = StudentNet(self.config.student.build(self.teacher.text_dim))
        if self.config.init:
            warm_start(student, Path(self.config.init))
        return DistillationObjective(student, self.config.loss, self.config.pairs)

    def teacher_outputs(self, batch: DistillBatch) -> TeacherOutput:
        """The teacher's features for ``batch`` (from the disk cache when every view is deterministic)."""
        with_text = self.config.loss.semantic_weight > 0
        use_cache = self.feature_cache is not None and all(batch.deterministic)
        device = batch.coords.device
        if use_cache:
            loaded = [
                self.feature_cache.load(self._scene_key(i), n, device) for i, n in zip(batch.scene_index, batch.sizes)
            ]
            if all(out is not None and (out.text is not None or not with_text) for out in loaded):
                return TeacherOutput(
                    torch.cat([o.guide for o in loaded]), torch.cat([o.text for o in loaded]) if with_text else None
                )
        inputs = batch.teacher_features if batch.teacher_features is not None else batch.student_features
        sparse = batch_sparse_tensor(batch, len(self.teacher.model.config.channels), inputs)
        out = self.teacher.features(sparse, self.config.pairs.teacher_space, with_text)
        if use_cache:
            out = round_half(out)
            for index, start, size in zip(batch.scene_index, batch.offsets, batch.sizes):
                part = slice(start, start + size)
                self.feature_cache.store(
                    self._scene_key(index), TeacherOutput(out.guide[part], None if out.text is None else out.text[part])
                )
        return out

    def _scene_key(self, index: int) -> str:
        """The prepared scan's file name: content + preparation settings, not a position in --data."""
        return self.scene_files[index].stem

    def training_step(self, model: nn.Module, batch: DistillBatch, device: torch.device) -> StepOutput:
        batch = batch.to(device)
        teacher = self.teacher_outputs(batch)
        loss, metrics = model(batch, teacher.guide, teacher.text)
        return StepOutput(loss, metrics)

    # ------------------------------------------------------------------------ validation
    def validate(self, model: nn.Module, device: torch.device, step: int) -> dict[str, float]:
        if self.validator is None:
            return {}
        metrics = self.validator(model, device)
        self.last_validation = dict(metrics)
        if self.best_objective is None or metrics["objective"] < self.best_objective:
            self.best_objective = float(metrics["objective"])
            self._export(model, self.run_dir / BEST_DIR, step, finished=False, metrics=self._val_metrics(metrics))
        metrics["best_objective"] = self.best_objective
        return metrics

    @staticmethod
    def _val_metrics(metrics: dict[str, float]) -> dict[str, float]:
        return {f"val_{k}": float(v) for k, v in metrics.items() if k != "seconds"}

    # ---------------------------------------------------------------------------- export
    def export(self, model: nn.Module, run_dir: Path, step: int, metrics: dict[str, float]) -> Path:
        train = {f"train_{k}": v for k, v in metrics.items() if k not in self.last_validation}
        merged = {**train, **self._val_metrics({k: v for k, v in metrics.items() if k in self.last_validation})}
        return self._export(model, Path(run_dir) / LAST_DIR, step, finished=True, metrics=merged)

    def _export(self, model: nn.Module, directory: Path, step: int, finished: bool, metrics: dict[str, float]) -> Path:
        student = model.student if isinstance(model, DistillationObjective) else model
        metadata = student_metadata(
            student,
            teacher=self.teacher,
            config=self.config,
            voxel_size=self.voxel_size,
            step=step,
            finished=finished,
            metrics=metrics,
            sources=self.sources,
            device=self.device_name,
        )
        return export_student(directory, student, metadata)


def warm_start(student: StudentNet, checkpoint: Path) -> None:
    """Copy a trained student's weights into ``student`` (``init`` in the recipe): a new teacher's
    distillation then starts from what an earlier one taught instead of from noise. The
    architecture must match tensor for tensor; anything else is a ConfigError naming the difference."""
    from ov3d_ros.core.checkpoint import CheckpointError, load_checkpoint

    try:
        trained, _ = load_checkpoint(checkpoint, device="cpu")
    except CheckpointError as exc:
        raise ConfigError(f"init: {exc}") from exc
    try:
        student.load_state_dict(trained.state_dict())
    except RuntimeError as exc:
        raise ConfigError(f"init: {checkpoint} does not match the recipe's student architecture: {exc}") from exc


def _describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


__all__ = ["PREPARED_FILE", "DistillTask"]
