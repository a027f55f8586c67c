"""Student checkpoints: ``model.safetensors`` (weights) + ``model.json`` (everything else).

A checkpoint is a directory holding both files. The JSON says how to rebuild and use the
weights -- architecture, voxel size, input features, the text space the semantic head was trained
against -- plus provenance (training data, metrics, creation time, git commit) and the SHA-256 of
the weights file, so a JSON and a weights file from different runs are caught on load.

Loading validates everything and raises :class:`CheckpointError` with a message that says which
file is wrong and how: missing files, unparsable JSON, unknown schema, corrupt or truncated
safetensors, tensors that do not match the architecture, non-finite weights, a semantic head
whose width differs from the recorded text encoder's. :func:`check_text_space` then refuses a
text encoder other than the one recorded.

``trained: false`` marks random-init plumbing checkpoints (tests, benchmarks); the Segmenter
refuses them unless asked explicitly, so random weights are never presented as a model.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .features import DEFAULT_FEATURES, feature_set
from .ggp import GGPConfig
from .network import StudentConfig, StudentNet
from .provenance import file_sha256, git_commit
from .text import TextEncoder

SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
PACKAGED_MODELS = Path(__file__).resolve().parents[1] / "weights"  # default/, sim_only/, ...
_REQUIRED_KEYS = ("schema_version", "architecture", "voxel_size", "input_features", "text_encoder", "weights_sha256")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


class TextSpaceMismatchError(CheckpointError):
    """The text encoder differs from the one the checkpoint's semantic head was trained against."""


class TemplateMismatchWarning(UserWarning):
    """Same text encoder, different prompt templates than at training time."""


@dataclass
class TextSpace:
    """The text embedding space a semantic head lives in."""

    encoder_id: str
    dim: int
    templates: tuple[str, ...] = ("{}",)

    def to_dict(self) -> dict:
        return {"id": self.encoder_id, "dim": self.dim, "templates": list(self.templates)}

    @classmethod
    def from_dict(cls, data: dict) -> TextSpace:
        return cls(str(data["id"]), int(data["dim"]), tuple(data.get("templates") or ("{}",)))

    @classmethod
    def of(cls, encoder: TextEncoder) -> TextSpace:
        return cls(encoder.encoder_id, int(encoder.dim), tuple(getattr(encoder, "templates", ("{}",))))


@dataclass
class CheckpointMetadata:
    """Everything in ``model.json`` except the schema version and the weights hash."""

    architecture: StudentConfig
    text_space: TextSpace
    voxel_size: float = 0.02
    input_features: str = DEFAULT_FEATURES
    trained: bool = True
    score_temperature: float = 0.05  # softmax temperature over cosine logits (see core.query)
    training_data: Any = None  # free-form description: datasets, scenes, teacher, epochs
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    git_commit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # GGP setting calibrated for this model's affinities ({"k", "tau", "iterations", "calibration"};
    # ``ov3d-train calibrate``); None = not calibrated, the GGPConfig defaults apply
    ggp: dict[str, Any] | None = None
    # the one-query decision's rule calibrated for this model ({"exclude", "alias", "margin",
    # "calibration"}; ``ov3d-train calibrate-query``); None = QueryRule's defaults apply
    query: dict[str, Any] | None = None

    def ggp_config(self) -> GGPConfig | None:
        """The calibrated :class:`GGPConfig`, or None when the checkpoint records none."""
        return _ggp_config_of(self.ggp) if self.ggp else None

    def query_rule(self):
        """The calibrated :class:`~.query.QueryRule`, or None when the checkpoint records none."""
        from .query import QueryRule

        return QueryRule.from_record(self.query) if self.query else None

    def to_json_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "architecture": self.architecture.to_dict(),
            "voxel_size": self.voxel_size,
            "input_features": self.input_features,
            "text_encoder": self.text_space.to_dict(),
            "trained": self.trained,
            "score_temperature": self.score_temperature,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "created": self.created,
            "git_commit": self.git_commit,
            "extra": self.extra,
            "ggp": self.ggp,
            **({"query": self.query} if self.query is not None else {}),
        }

    @classmethod
    def from_json_dict(cls, data: dict) -> CheckpointMetadata:
        return cls(
            architecture=StudentConfig.from_dict(data["architecture"]),
            text_space=TextSpace.from_dict(data["text_encoder"]),
            voxel_size=float(data["voxel_size"]),
            input_features=str(data["input_features"]),
            trained=bool(data.get("trained", True)),
            score_temperature=float(data.get("score_temperature", 0.05)),
            training_data=data.get("training_data"),
            metrics=dict(data.get("metrics") or {}),
            created=str(data.get("created", "")),
            git_commit=data.get("git_commit"),
            extra=dict(data.get("extra") or {}),
            ggp=_ggp_or_none(data.get("ggp")),
            query=_query_or_none(data.get("query")),
        )


def _ggp_or_none(value: Any) -> dict[str, Any] | None:
    """model.json's ``ggp``, checked (a bad value fails on load, not at the first cloud)."""
    if value is None:
        return None
    try:
        _ggp_config_of(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"model.json 'ggp' must hold a valid k, tau and iterations, got {value!r} ({exc})"
        ) from exc
    return dict(value)


def _query_or_none(value: Any) -> dict[str, Any] | None:
    """model.json's ``query``, checked like ``ggp``."""
    if value is None:
        return None
    from .query import QueryRule

    try:
        QueryRule.from_record(value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"model.json 'query' must hold a valid exclude, alias and margin, got {value!r} ({exc})"
        ) from exc
    return dict(value)


def _ggp_config_of(record: dict[str, Any]) -> GGPConfig:
    return GGPConfig.from_record(record)


# ------------------------------------------------------------------------------------------ save
def save_checkpoint(path: str | Path, model: StudentNet, metadata: CheckpointMetadata) -> Path:
    """Write ``path/model.safetensors`` and ``path/model.json`` atomically; returns the directory.

    ``metadata.architecture`` must be the model's own config; ``created`` and ``git_commit`` are
    filled in when empty.
    """
    from safetensors.torch import save_file

    directory = _directory_of(Path(path))
    directory.mkdir(parents=True, exist_ok=True)
    if asdict(metadata.architecture) != asdict(model.config):
        raise CheckpointError("metadata.architecture differs from the model's own StudentConfig")
    _validate_semantics(metadata, directory)
    tensors = {
        name: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype).contiguous()
        for name, t in model.state_dict().items()
    }
    weights_tmp = _temp_path(directory, WEIGHTS_FILE)
    json_tmp = _temp_path(directory, METADATA_FILE)
    try:
        save_file(tensors, str(weights_tmp), metadata={"format": "pt", "ov3d_schema": str(SCHEMA_VERSION)})
        digest = file_sha256(weights_tmp)
        data = metadata.to_json_dict()
        data["created"] = metadata.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
        data["git_commit"] = metadata.git_commit or git_commit()
        data["weights_sha256"] = digest
        _write_durably(json_tmp, json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.chmod(weights_tmp, _file_mode())  # safetensors creates its file owner-only
        _fsync(weights_tmp)
        # Weights first: a crash in between leaves a new weights file whose hash the old JSON
        # rejects -- an error on load, never a silent mix of two runs.
        os.replace(weights_tmp, directory / WEIGHTS_FILE)
        os.replace(json_tmp, directory / METADATA_FILE)
    finally:  # after a failure, leave no half-written temporaries behind
        weights_tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
    return directory


def record_ggp(path: str | Path, ggp: dict[str, Any]) -> Path:
    """Write a calibrated GGP setting into an existing checkpoint's ``model.json`` (atomically;
    the weights and their hash are untouched). Returns the metadata file."""
    return _record_field(path, "ggp", _ggp_or_none(ggp))


def record_query_rule(path: str | Path, rule: dict[str, Any]) -> Path:
    """Write a calibrated one-query rule into an existing checkpoint's ``model.json`` (``query``,
    atomically; weights untouched). Returns the metadata file."""
    return _record_field(path, "query", _query_or_none(rule))


def _record_field(path: str | Path, key: str, value: Any) -> Path:
    """Set one top-level field of a valid checkpoint's ``model.json``, written atomically."""
    directory = _existing_directory(Path(path))
    meta_path = directory / METADATA_FILE
    data = _read_json(directory)
    _parse_metadata(data, meta_path)  # a valid checkpoint only
    data[key] = value
    tmp = _temp_path(directory, METADATA_FILE)
    try:
        _write_durably(tmp, json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, meta_path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta_path


# ------------------------------------------------------------------------------------------ load
def read_metadata(path: str | Path) -> CheckpointMetadata:
    """Parse and validate ``model.json`` only (no weights)."""
    directory = _existing_directory(Path(path))
    return _read_metadata(directory)[0]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[StudentNet, CheckpointMetadata]:
    """Rebuild the student from a checkpoint directory (or either of its files), validated.

    Returns the model in eval mode on ``device`` with the conv algorithm set for that device.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .network import set_conv_algorithm

    directory = _existing_directory(Path(path))
    metadata, digest = _read_metadata(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: {WEIGHTS_FILE} is missing (found only {METADATA_FILE})")
    actual = file_sha256(weights)
    if actual != digest:
        raise CheckpointError(
            f"{weights}: contents do not match {METADATA_FILE} (sha256 {actual[:12]}... != recorded {digest[:12]}...); "
            "the file is corrupt or the two files come from different checkpoints"
        )
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc

    model = StudentNet(metadata.architecture)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: tensors do not match the architecture in {METADATA_FILE}: "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    wrong = [
        f"{n} {tuple(tensors[n].shape)} != {tuple(t.shape)}" for n, t in expected.items() if tensors[n].shape != t.shape
    ]
    if wrong:
        raise CheckpointError(f"{weights}: tensor shapes do not match the architecture: {_few(wrong)}")
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{weights}: non-finite values (NaN/inf) in {_few(bad)}; the training run diverged")
    model.load_state_dict(tensors, strict=True)
    model = model.to(device).eval()
    set_conv_algorithm(model, device)
    return model, metadata


def check_text_space(metadata: CheckpointMetadata, encoder: TextEncoder) -> None:
    """Raise :class:`TextSpaceMismatchError` unless ``encoder`` is the one the checkpoint expects."""
    want = metadata.text_space
    got = TextSpace.of(encoder)
    if want.encoder_id != got.encoder_id or want.dim != got.dim:
        raise TextSpaceMismatchError(
            f"the checkpoint's semantic head was trained against text encoder {want.encoder_id!r} ({want.dim}-d), "
            f"but the text encoder given is {got.encoder_id!r} ({got.dim}-d); its embeddings live in a different "
            f"space, so every label would be wrong. Use text encoder {want.encoder_id!r} with this checkpoint."
        )
    if want.templates != got.templates:
        warnings.warn(
            f"text encoder {got.encoder_id!r} uses prompt templates {list(got.templates)} but the checkpoint was "
            f"trained with {list(want.templates)}; scores will shift slightly",
            TemplateMismatchWarning,
            stacklevel=2,
        )


# ------------------------------------------------------------------------------------- internals
def _directory_of(path: Path) -> Path:
    return path.parent if path.suffix in (".safetensors", ".json") else path


def packaged_model_names() -> list[str]:
    """Names of the models shipped in the package (``ov3d_ros/weights/<name>``)."""
    if not PACKAGED_MODELS.is_dir():
        return []
    return sorted(p.name for p in PACKAGED_MODELS.iterdir() if (p / METADATA_FILE).is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path, or the bare name of a packaged model (``sim_only``, ``default``) when no
    file or folder of that name exists where the caller runs."""
    path = Path(path)
    if not path.exists() and len(path.parts) == 1 and path.name in packaged_model_names():
        return PACKAGED_MODELS / path.name
    return path


def _existing_directory(path: Path) -> Path:
    path = resolve_checkpoint(path)
    directory = _directory_of(path)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: expected a directory with {METADATA_FILE} and {WEIGHTS_FILE}, or the name of a "
            f"packaged model ({', '.join(packaged_model_names()) or 'none installed'})"
        )
    if not directory.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory (expected {METADATA_FILE} + {WEIGHTS_FILE})")
    return directory


def _read_metadata(directory: Path) -> tuple[CheckpointMetadata, str]:
    data = _read_json(directory)
    return _parse_metadata(data, directory / METADATA_FILE), str(data["weights_sha256"])


def _read_json(directory: Path) -> dict:
    """model.json as a JSON object (not yet validated)."""
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{directory}: {METADATA_FILE} is missing; a checkpoint needs {METADATA_FILE} and {WEIGHTS_FILE}"
        )
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object, got {type(data).__name__}")
    return data


def _parse_metadata(data: dict, meta_path: Path) -> CheckpointMetadata:
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{meta_path}: missing keys {missing}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise CheckpointError(
            f"{meta_path}: schema version {data['schema_version']!r}; this ov3d_ros reads version {SCHEMA_VERSION}"
        )
    try:
        metadata = CheckpointMetadata.from_json_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: malformed metadata ({type(exc).__name__}: {exc})") from exc
    _validate_semantics(metadata, meta_path)
    return metadata


def _validate_semantics(metadata: CheckpointMetadata, where: Path) -> None:
    arch = metadata.architecture
    if arch.semantic_dim != metadata.text_space.dim:
        raise CheckpointError(
            f"{where}: semantic head is {arch.semantic_dim}-d but text encoder "
            f"{metadata.text_space.encoder_id!r} is {metadata.text_space.dim}-d"
        )
    try:
        channels = feature_set(metadata.input_features).channels
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    if channels != arch.backbone.in_channels:
        raise CheckpointError(
            f"{where}: input features {metadata.input_features!r} have {channels} channels "
            f"but the network takes {arch.backbone.in_channels}"
        )
    if not (metadata.voxel_size > 0):
        raise CheckpointError(f"{where}: voxel_size must be positive, got {metadata.voxel_size}")
    if not (metadata.score_temperature > 0):
        raise CheckpointError(f"{where}: score_temperature must be positive, got {metadata.score_temperature}")


def _temp_path(directory: Path, name: str) -> Path:
    # a unique name in the target directory (os.replace is atomic only within one file system);
    # created by open() rather than mkstemp so the file gets the usual umask permissions
    return directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def _file_mode() -> int:
    """rw for everyone the umask allows, like any file written with open()."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_durably(path: Path, text: str) -> None:
    """``text`` into a temporary file, with the package's file mode, on disk before any rename."""
    path.write_text(text, encoding="utf-8")
    os.chmod(path, _file_mode())
    _fsync(path)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _few(items: list[str], limit: int = 5) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
