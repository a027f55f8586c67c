"""The trained teacher on disk: ``teacher.safetensors`` + ``teacher.json`` in one directory.

Same conventions as the student's checkpoints (``ov3d_ros.core.checkpoint``): weights in
safetensors, everything needed to rebuild and use them in JSON (architecture, voxel size, input
features, the text space, the SHA-256 of the weights), both written atomically, weights first.
The teacher is a separate format because it is a different network (no affinity head, a
VL-adapter); distillation (``ov3d-train distill``) reads it with :func:`load_teacher`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ov3d_ros.core.checkpoint import CheckpointError, TextSpace
from ov3d_ros.core.network import set_conv_algorithm
from ov3d_ros.core.provenance import file_sha256

from ..trainer.config import from_dict
from ..trainer.provenance import git_commit
from .model import MPECModel, MPECModelConfig

ROLE = "mpec_teacher"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "teacher.safetensors"
METADATA_FILE = "teacher.json"


@dataclass
class TeacherMetadata:
    architecture: MPECModelConfig
    text_space: TextSpace
    voxel_size: float
    input_features: str
    trained: bool = True
    steps: int = 0
    training_data: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    git_commit: str | None = None


def save_teacher(directory: str | Path, model: MPECModel, metadata: TeacherMetadata) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).contiguous()
        for name, t in model.state_dict().items()
    }
    data = {
        "role": ROLE,
        "schema_version": SCHEMA_VERSION,
        "architecture": metadata.architecture.to_dict(),
        "text_dim": model.text_dim,
        "text_encoder": metadata.text_space.to_dict(),
        "voxel_size": metadata.voxel_size,
        "input_features": metadata.input_features,
        "trained": metadata.trained,
        "steps": metadata.steps,
        "training_data": metadata.training_data,
        "metrics": metadata.metrics,
        "recipe": metadata.recipe,
        "created": metadata.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": metadata.git_commit or git_commit(),
    }
    weights_tmp, json_tmp = _temp(directory, WEIGHTS_FILE), _temp(directory, METADATA_FILE)
    try:
        save_file(tensors, str(weights_tmp), metadata={"format": "pt", "role": ROLE})
        data["weights_sha256"] = file_sha256(weights_tmp)
        json_tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        for tmp in (weights_tmp, json_tmp):
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(weights_tmp, directory / WEIGHTS_FILE)
        os.replace(json_tmp, directory / METADATA_FILE)
    finally:
        weights_tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
    return directory


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> tuple[MPECModel, TeacherMetadata]:
    """Rebuild a saved teacher (eval mode, conv algorithm set for ``device``); CheckpointError if unusable."""
    from safetensors.torch import load_file

    directory = Path(path)
    if directory.is_file():
        directory = directory.parent
    meta_path, weights = directory / METADATA_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{directory}: not a teacher checkpoint (needs {METADATA_FILE} and {WEIGHTS_FILE})")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
    if data.get("role") != ROLE or data.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{meta_path}: not an MPEC teacher of schema {SCHEMA_VERSION} (role {data.get('role')!r})"
        )
    if file_sha256(weights) != data.get("weights_sha256"):
        raise CheckpointError(f"{weights}: contents do not match {METADATA_FILE} (corrupt, or files of two runs)")
    architecture = from_dict(MPECModelConfig, data["architecture"], "architecture")
    metadata = TeacherMetadata(
        architecture=architecture,
        text_space=TextSpace.from_dict(data["text_encoder"]),
        voxel_size=float(data["voxel_size"]),
        input_features=str(data["input_features"]),
        trained=bool(data.get("trained", True)),
        steps=int(data.get("steps", 0)),
        training_data=list(data.get("training_data") or []),
        metrics=dict(data.get("metrics") or {}),
        recipe=dict(data.get("recipe") or {}),
        created=str(data.get("created", "")),
        git_commit=data.get("git_commit"),
    )
    model = MPECModel(architecture, int(data["text_dim"]))
    tensors = load_file(str(weights), device="cpu")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: tensors do not match the architecture in {METADATA_FILE}: {exc}") from exc
    model = model.to(device).eval()
    set_conv_algorithm(model, device)
    return model, metadata


def _temp(directory: Path, name: str) -> Path:
    handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(handle)
    return Path(tmp)
