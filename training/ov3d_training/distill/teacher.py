"""The frozen MPEC teacher during distillation: loading, per-batch features, an optional disk cache.

The teacher is the directory written by the MPEC trainer (``<mpec run>/teacher/``:
``teacher.safetensors`` + ``teacher.json``, see ``mpec.export``); ``--teacher`` may name that
directory or the MPEC run directory holding it. It is loaded in eval mode (BatchNorm uses its
running statistics, so a voxel's features do not depend on the other scans of the batch), never
enters the optimiser, and runs under ``no_grad`` on exactly the voxels the student sees.

Per voxel it gives two things:

* ``guide``: the space the contrastive pairs are chosen in -- the point-entity contrast features
  (``pairs.teacher_space = "contrast"``) or the VL-adapter output (``"text"``);
* ``text``: the VL-adapter output, the target of the student's semantic head.

Cache: when views are deterministic (no augmentation, no crop) a scan's teacher features are the
same every epoch; :class:`TeacherFeatureCache` then keeps them on disk in float16 so later epochs
skip the teacher's forward pass: on CPU, loading a scan's features costs a small fraction of
computing them (``python -m ov3d_training.distill.bench`` reports both, as ``teacher_s`` and
``teacher_cache_load_s``). With the cache on, features are *always* rounded to float16 --
freshly computed or loaded -- so a run gives the same numbers whichever epoch filled the cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import spconv.pytorch as spconv
import torch

from ov3d_ros.core.checkpoint import CheckpointError
from ov3d_ros.core.network import set_conv_algorithm

from ..mpec.export import METADATA_FILE, TeacherMetadata, load_teacher
from ..mpec.model import MPECModel

TEACHER_SUBDIR = "teacher"  # where the MPEC trainer exports inside its run directory


def resolve_teacher_dir(path: str | Path) -> Path:
    """The teacher export directory for ``--teacher`` (the export itself or an MPEC run directory)."""
    path = Path(path).expanduser()
    if path.is_file() and path.name == METADATA_FILE:
        path = path.parent
    for candidate in (path, path / TEACHER_SUBDIR):
        if (candidate / METADATA_FILE).is_file():
            return candidate.resolve()
    if not path.exists():
        raise CheckpointError(f"--teacher {path}: no such file or directory")
    raise CheckpointError(
        f"--teacher {path}: no {METADATA_FILE} there or in {path / TEACHER_SUBDIR}; pass the directory that "
        "'ov3d-train mpec' exported (<mpec run>/teacher) or the MPEC run directory itself"
    )


@dataclass
class TeacherOutput:
    guide: torch.Tensor  # (V, C) float32, pair-mining space
    text: torch.Tensor | None  # (V, D) float32 VL-adapter output, or None when not needed


class FrozenTeacher:
    """An MPEC teacher in eval mode with its metadata (module doc)."""

    def __init__(self, model: MPECModel, metadata: TeacherMetadata, directory: Path, weights_sha256: str) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.metadata = metadata
        self.directory = Path(directory)
        self.weights_sha256 = weights_sha256

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> FrozenTeacher:
        directory = resolve_teacher_dir(path)
        model, metadata = load_teacher(directory, device)
        sha = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))["weights_sha256"]
        return cls(model, metadata, directory, str(sha))

    @property
    def text_dim(self) -> int:
        return int(self.model.text_dim)

    @property
    def input_features(self) -> str:
        return self.model.config.input_features

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> FrozenTeacher:
        self.model = set_conv_algorithm(self.model.to(device).eval(), device)
        return self

    @torch.no_grad()
    def features(self, x: spconv.SparseConvTensor, space: str, with_text: bool) -> TeacherOutput:
        """Teacher outputs for a (batched) sparse view whose features are the teacher's inputs.

        Equal to ``MPECModel.encode`` without a mask (no colour is hidden from the teacher here)
        on the same voxels. Runs under the caller's autocast; returns float32.
        """
        encoded = self.model.backbone(x)
        text = self.model.text_features(encoded).float() if (with_text or space == "text") else None
        guide = text if space == "text" else self.model.contrast_features(encoded).float()
        return TeacherOutput(guide, text if with_text else None)

    def describe(self) -> dict:
        """Provenance for the student's checkpoint metadata."""
        m = self.metadata
        return {
            "path": str(self.directory),
            "weights_sha256": self.weights_sha256,
            "trained": m.trained,
            "steps": m.steps,
            "architecture": m.architecture.to_dict(),
            "training_data": m.training_data,
            "metrics": m.metrics,
            "created": m.created,
            "git_commit": m.git_commit,
        }


class TeacherFeatureCache:
    """float16 teacher features per scan on disk (module doc); one file per scan, atomic writes."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str, num_voxels: int, device: torch.device) -> TeacherOutput | None:
        """The features stored under ``key`` (a prepared scan's name), None if absent or stale."""
        path = self._path(key)
        if not path.is_file():
            return None
        data = torch.load(path, map_location=device, weights_only=True)
        if len(data["guide"]) != num_voxels:  # a different view (e.g. data settings changed): recompute
            return None
        text = data.get("text")
        return TeacherOutput(data["guide"].float(), None if text is None else text.float())

    def store(self, key: str, output: TeacherOutput) -> None:
        payload = {"guide": output.guide.detach().to("cpu", torch.float16)}
        if output.text is not None:
            payload["text"] = output.text.detach().to("cpu", torch.float16)
        path = self._path(key)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)


def round_half(output: TeacherOutput) -> TeacherOutput:
    """What a cache round trip does to the numbers (float16), applied to fresh features too."""
    text = None if output.text is None else output.text.half().float()
    return TeacherOutput(output.guide.half().float(), text)
