"""Run configuration: nested dataclasses filled from YAML, with one clear error per bad key.

A recipe is one YAML file; every section maps onto a dataclass. Unknown keys are errors (a typo
must not silently fall back to a default), values are converted to the field's declared type
(tuples from YAML lists, floats from ints). The resolved configuration is written into the run
directory, and ``--resume`` refuses a config that differs from it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe that cannot be used: unknown key, wrong type, missing file."""


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 2e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 500
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0  # max global grad norm; 0 = off


@dataclass
class TrainerConfig:
    """The shared loop's settings (task-independent)."""

    steps: int = 20000
    batch_size: int = 8  # GLOBAL batch: split evenly over data-parallel processes
    num_workers: int = 4  # DataLoader workers per process
    log_every: int = 10
    val_every: int = 1000  # 0 = only at the end
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    amp: bool = True  # mixed precision (float16 autocast + GradScaler); CUDA only
    device: str = "auto"  # auto | cpu | cuda
    progress: bool = True  # tqdm bar on rank 0
    cpu_threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    # Wall-clock budget of the training steps in minutes (0 = none; data preparation not counted,
    # validation counted). The run ends after the step that uses it up -- checkpointed, validated
    # and exported like a run that reached ``steps`` -- and the LR's cosine follows the larger of
    # step and time progress, so it reaches its floor at the budget's end. Time is summed over
    # resumed parts (``train_seconds`` in the checkpoint).
    max_minutes: float = 0.0

    def __post_init__(self) -> None:
        if not self.max_minutes >= 0:
            raise ConfigError(f"trainer.max_minutes must be >= 0 (0 = no budget), got {self.max_minutes}")
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"trainer.steps and trainer.batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"trainer.device must be auto, cpu or cuda, got {self.device!r}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a (YAML) mapping, recursively; raises ConfigError."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(hints[name], value, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(config: Any) -> Any:
    """Dataclass -> plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def dump_yaml(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} fits none of {options}: {errors}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        converted = [_convert(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    if hint is Path:
        return Path(value)
    return value


__all__ = ["ConfigError", "OptimConfig", "TrainerConfig", "dump_yaml", "from_dict", "load_yaml", "to_dict"]
