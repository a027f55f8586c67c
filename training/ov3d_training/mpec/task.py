"""MPEC pretraining as a :class:`~ov3d_training.trainer.loop.TrainingTask`.

``prepare`` (rank 0 first) finds the sources, prepares the scenes (cached), encodes the validation
class names and writes ``prepared.json`` into the run directory; the other processes read it, so
only rank 0 ever loads the text encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.dataset import MPECBatch, MPECDataset, collate_items
from ..data.scene import TrainingScene, prepare_scenes
from ..data.sources import discover_sources, evaluation_dir, repeat_each, source_repeats
from ..trainer.config import ConfigError, to_dict
from ..trainer.distributed import DistInfo
from ..trainer.loop import StepOutput
from .config import MPECConfig
from .export import TeacherMetadata, save_teacher
from .model import MPECModel
from .objective import METRIC_NAMES, MPECObjective
from .validate import EvaluationScan, evaluate_teacher, load_evaluation_scan, retrieval_on_scenes, scannet20_names

PREPARED_FILE = "prepared.json"
TEACHER_DIR = "teacher"
DEFAULT_EVALUATION_SCAN = "scene0000_00.npz"


@dataclass
class TextSpaceInfo:
    encoder_id: str
    dim: int
    templates: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"id": self.encoder_id, "dim": self.dim, "templates": list(self.templates)}


class MPECTask:
    name = "mpec"
    metric_names = METRIC_NAMES

    def __init__(self, config: MPECConfig, data: Sequence[str | Path]) -> None:
        self.config = config
        self.data = [str(d) for d in data]
        self.scene_files: list[Path] = []
        self.text_space: TextSpaceInfo | None = None
        self.class_embeddings: np.ndarray | None = None
        self._evaluation: EvaluationScan | None = None

    # --------------------------------------------------------------------------- prepare
    def prepare(self, info: DistInfo, run_dir: Path) -> None:
        record = Path(run_dir) / PREPARED_FILE
        if info.is_main:
            self._prepare_main(Path(run_dir), record, progress=self.config.trainer.progress)
        else:
            data = json.loads(record.read_text(encoding="utf-8"))
            self.scene_files = [Path(p) for p in data["scene_files"]]
            space = data["text_space"]
            self.text_space = TextSpaceInfo(space["id"], int(space["dim"]), tuple(space["templates"]))

    def _prepare_main(self, run_dir: Path, record: Path, progress: bool) -> None:
        cfg = self.config
        sources = discover_sources(self.data)
        encoder = self._text_encoder()
        self.text_space = TextSpaceInfo(encoder.encoder_id, int(encoder.dim), tuple(encoder.templates))
        sentence_encoder = None

        def make_encode():
            def encode(texts: Sequence[str], kinds: Sequence[str]) -> np.ndarray:
                nonlocal sentence_encoder
                out = np.zeros((len(texts), encoder.dim), np.float32)
                names = [i for i, k in enumerate(kinds) if k == "category"]
                sentences = [i for i, k in enumerate(kinds) if k != "category"]
                if names:  # category names exactly as queries are encoded at inference
                    out[names] = encoder.encode([texts[i] for i in names])
                if sentences:  # captions / referrals are sentences: no prompt template around them
                    if sentence_encoder is None:
                        sentence_encoder = (
                            encoder if tuple(encoder.templates) == ("{}",) else self._text_encoder(("{}",))
                        )
                    out[sentences] = sentence_encoder.encode([texts[i] for i in sentences])
                return out

            return encode

        cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"
        prepared = prepare_scenes(
            sources, cfg.data.scene_config(), cache_dir, make_encode, self.text_space.to_dict(), encoder.dim, progress
        )
        self.scene_files = repeat_each(prepared, source_repeats(self.data, sources))
        if cfg.validation.enabled:
            if not self.evaluation_scan_path().is_file():
                raise ConfigError(
                    f"validation scan not found: {self.evaluation_scan_path()} (set validation.scan, "
                    "OV3D_SHARED_DATA, or validation.enabled: false)"
                )
            self.class_embeddings = encoder.encode(scannet20_names())
        record.write_text(
            json.dumps(
                {
                    "sources": [str(s.path) for s in sources],
                    "scene_files": [str(p) for p in self.scene_files],
                    "text_space": self.text_space.to_dict(),
                },
                indent=2,
            ),
            encoding="utf-8",
        )

    def _text_encoder(self, templates: tuple[str, ...] | None = None):
        from ov3d_ros.core.text import load_text_encoder

        m = self.config.model
        return load_text_encoder(
            m.text_encoder, weights_path=m.text_weights, templates=templates or m.text_templates, device="cpu"
        )

    # ------------------------------------------------------------------------------ data
    def train_dataset(self) -> MPECDataset:
        cfg = self.config
        return MPECDataset(
            self.scene_files, cfg.data.voxel_size, cfg.data.view_config(cfg.model.input_features), cfg.seed
        )

    def collate(self, items) -> MPECBatch:
        return collate_items(items)

    # ----------------------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        if self.text_space is None:
            raise RuntimeError("MPECTask.build_model before prepare")
        return MPECObjective(MPECModel(self.config.model, self.text_space.dim), self.config.loss)

    def training_step(self, model: nn.Module, batch: MPECBatch, device: torch.device) -> StepOutput:
        loss, metrics = model(batch.to(device))
        return StepOutput(loss, metrics)

    # ------------------------------------------------------------------------ validation
    def evaluation_scan_path(self) -> Path:
        path = (
            Path(self.config.validation.scan)
            if self.config.validation.scan
            else evaluation_dir() / DEFAULT_EVALUATION_SCAN
        )
        return path

    def validate(self, model: nn.Module, device: torch.device, step: int) -> dict[str, float]:
        """Retrieval on a few training scenes, and the real-scan segmentation (when enabled)."""
        cfg = self.config.validation
        teacher = model.model if isinstance(model, MPECObjective) else model
        metrics: dict[str, float] = {}
        if cfg.train_scenes > 0:
            scenes = [TrainingScene.load(p) for p in self.scene_files[: cfg.train_scenes]]
            metrics.update(retrieval_on_scenes(teacher, scenes, self.config.data.voxel_size, device, cfg.max_voxels))
        if cfg.enabled and self.class_embeddings is not None:
            path = self.evaluation_scan_path()
            if self._evaluation is None:
                self._evaluation = load_evaluation_scan(path)
            voxel_size = self.config.data.voxel_size
            metrics.update(
                evaluate_teacher(teacher, self._evaluation, self.class_embeddings, voxel_size, device, cfg.max_voxels)
            )
        return metrics

    # ---------------------------------------------------------------------------- export
    def export(self, model: nn.Module, run_dir: Path, step: int, metrics: dict[str, float]) -> Path:
        teacher = model.model if isinstance(model, MPECObjective) else model
        space = self.text_space
        from ov3d_ros.core.checkpoint import TextSpace

        metadata = TeacherMetadata(
            architecture=self.config.model,
            text_space=TextSpace(space.encoder_id, space.dim, space.templates),
            voxel_size=self.config.data.voxel_size,
            input_features=self.config.model.input_features,
            trained=True,
            steps=step,
            training_data=json.loads((Path(run_dir) / PREPARED_FILE).read_text(encoding="utf-8"))["sources"],
            metrics={k: float(v) for k, v in metrics.items()},
            recipe=to_dict(self.config),
        )
        return save_teacher(Path(run_dir) / TEACHER_DIR, teacher, metadata)
