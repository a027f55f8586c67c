"""The shared training loop: one implementation for MPEC pretraining and for distillation.

A *task* (``mpec.task.MPECTask``, later the distillation task) knows its data, model, loss,
validation and export; the :class:`Trainer` knows everything else and is the same for all tasks:

* seeding, AdamW (no weight decay on biases, norms and tokens) with linear warmup + cosine decay;
* mixed precision on CUDA (float16 autocast + GradScaler), gradient clipping;
* data order from :class:`GlobalBatchSampler` (a function of seed and step), so that
  ``--resume`` continues exactly and W data-parallel processes train like one (see
  ``distributed`` for BatchNorm);
* rank-0 logging (CSV, TensorBoard, tqdm), periodic validation, atomic checkpoints every N steps,
  a PNG of the curves at each validation and at the end.

Contract with the task (:class:`TrainingTask`): ``training_step`` returns the *mean per-scan* loss
of its local batch, so that DDP's gradient average over equal local batches is the gradient of
the global batch mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ov3d_ros.core.network import set_conv_algorithm

from .config import OptimConfig, TrainerConfig
from .distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    synchronize_batchnorm,
)
from .metrics_logger import CSV_NAME, PLOT_NAME, MetricsLogger, plot_curves
from .sampler import GlobalBatchSampler
from .state import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)


class TrainingError(RuntimeError):
    """Training cannot go on: diverged loss, mismatched resume, ..."""


@dataclass
class StepOutput:
    """loss: scalar, mean per-scan loss of the local batch. metrics: for the log, each a value or a
    (sum, count) pair -- pairs average correctly over steps and processes when some batches lack
    a term (e.g. scans without texts); names must be among the task's ``metric_names``."""

    loss: torch.Tensor
    metrics: dict[str, float | tuple[float, float]] = field(default_factory=dict)


class TrainingTask(Protocol):
    """What a task provides to the :class:`Trainer` (MPEC here; distillation next)."""

    name: str
    metric_names: tuple[str, ...]  # every name a StepOutput may carry (fixed: processes all-reduce them)

    def prepare(self, info: DistInfo, run_dir: Path) -> None:
        """Build datasets / caches. Called on every process; rank 0 first, the others after a barrier."""

    def build_model(self) -> nn.Module: ...

    def train_dataset(self) -> Dataset:
        """Items are looked up by (epoch, index) keys (see ``sampler``)."""

    def collate(self, items: list[Any]) -> Any: ...

    def training_step(self, model: nn.Module, batch: Any, device: torch.device) -> StepOutput: ...

    def validate(self, model: nn.Module, device: torch.device, step: int) -> dict[str, float]:
        """Rank 0 only; ``model`` is the unwrapped module in eval mode. {} = nothing to report."""

    def export(self, model: nn.Module, run_dir: Path, step: int, metrics: dict[str, float]) -> Path | None:
        """Write the deliverable weights at the end of training (rank 0)."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    finished: bool  # False when stopped early by ``stop_at_step``
    last_metrics: dict[str, float]
    validation: dict[str, float]
    exported: Path | None
    seconds: float
    device: str
    world_size: int
    stopped_by: str = "steps"  # "steps" | "time budget" | "stop_at_step"
    train_seconds: float = 0.0  # time in training steps, all resumed parts together


def cosine_with_warmup(step: int, total: int, warmup: int, min_ratio: float, time_progress: float = 0.0) -> float:
    """LR multiplier: linear 0 -> 1 over ``warmup`` steps, then cosine 1 -> ``min_ratio`` at ``total``.

    ``time_progress`` (0..1, the share of a wall-clock budget used) moves the cosine on when it is
    ahead of the steps: a budgeted run decays to its floor by the end of its budget.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, max((step - warmup) / span, float(time_progress)))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and conv kernels; not biases, norm scales or learnable tokens (ndim <= 1)."""
    decay, no_decay = [], []
    for _, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Drives a :class:`TrainingTask` (module doc)."""

    def __init__(
        self,
        task: TrainingTask,
        trainer: TrainerConfig,
        optim: OptimConfig,
        *,
        seed: int,
        run_dir: str | Path,
        resume: bool = False,
        config_record: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.config = trainer
        self.optim_config = optim
        self.seed = int(seed)
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.config_record = config_record or {}
        self._budget_s = float(trainer.max_minutes) * 60.0
        self._seconds_before = 0.0  # training time of the parts before a resume
        self._loop_start: float | None = None

    def _train_seconds(self) -> float:
        running = time.perf_counter() - self._loop_start if self._loop_start is not None else 0.0
        return self._seconds_before + running

    def _time_progress(self) -> float:
        return min(1.0, self._train_seconds() / self._budget_s) if self._budget_s > 0 else 0.0

    # ------------------------------------------------------------------------------ setup
    def _build(self, info: DistInfo) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, Any, Any]:
        seed_everything(self.seed)  # same initial weights on every process (DDP also broadcasts them)
        core = set_conv_algorithm(self.task.build_model().to(info.device), info.device)
        if info.distributed:
            core = synchronize_batchnorm(core, info.device)
        model: nn.Module = core
        if info.distributed:
            model = DistributedDataParallel(
                core, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
        o = self.optim_config
        optimizer = torch.optim.AdamW(parameter_groups(core, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
        total, warmup, floor = self.config.steps, o.warmup_steps, o.min_lr_ratio
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_with_warmup(s, total, warmup, floor, self._time_progress())
        )
        use_amp = self.config.amp and info.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        return core, model, optimizer, scheduler, scaler

    def _resume_state(self, info: DistInfo) -> dict[str, Any] | None:
        if not self.resume:
            return None
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise TrainingError(f"--resume: no checkpoint under {self.run_dir / 'checkpoints'}")
        state = load_checkpoint(path, map_location=info.device)
        saved = state.get("config", {})
        if self.config_record and saved and saved != self.config_record:
            raise TrainingError(
                f"--resume: the configuration differs from the one {path} was trained with; "
                f"resume with the run's own config ({self.run_dir / 'config.yaml'})"
            )
        return state

    # ------------------------------------------------------------------------------- loop
    def fit(self, stop_at_step: int | None = None) -> TrainResult:
        """Train to ``trainer.steps`` (or stop after ``stop_at_step``, checkpointing there)."""
        started = time.perf_counter()
        cfg = self.config
        if cfg.cpu_threads:
            torch.set_num_threads(int(cfg.cpu_threads))
        info = init_distributed(cfg.device)
        if cfg.batch_size % info.world_size:
            raise TrainingError(
                f"trainer.batch_size {cfg.batch_size} is the global batch and must be divisible by the "
                f"{info.world_size} processes"
            )
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.task.prepare(info, self.run_dir)
        barrier()
        if not info.is_main:
            self.task.prepare(info, self.run_dir)

        core, model, optimizer, scheduler, scaler = self._build(info)
        state = self._resume_state(info)
        start = 0
        if state is not None:
            core.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start = int(state["step"])
            self._seconds_before = float(state.get("train_seconds", 0.0))
            restore_rng_state(state["rng"][min(info.rank, len(state["rng"]) - 1)])
        end = cfg.steps if stop_at_step is None else min(cfg.steps, int(stop_at_step))
        logger = MetricsLogger(self.run_dir, resume_step=start if state else None) if info.is_main else None

        dataset = self.task.train_dataset()
        sampler = GlobalBatchSampler(
            len(dataset),
            cfg.batch_size,
            seed=self.seed,
            rank=info.rank,
            world_size=info.world_size,
            start_step=start,
            end_step=end,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.task.collate,
            num_workers=cfg.num_workers,
            pin_memory=info.device.type == "cuda",
            persistent_workers=False,
        )
        progress = None
        if info.is_main and cfg.progress and end > start:
            from tqdm import tqdm

            progress = tqdm(total=cfg.steps, initial=start, desc=f"{self.task.name}", dynamic_ncols=True)

        use_amp = scaler.is_enabled()
        names = ["loss", "grad_norm", *self.task.metric_names]
        window = torch.zeros((2, len(names)), dtype=torch.float64)  # sums, counts
        window_steps, window_start = 0, time.perf_counter()
        last_metrics: dict[str, float] = {}
        validation: dict[str, float] = {}
        step = start
        budget_reached = self._budget_s > 0 and self._seconds_before >= self._budget_s
        if budget_reached:
            end = start  # a resumed run whose budget is already used up trains no further
        self._loop_start = time.perf_counter()
        model.train()
        for step_index, batch in zip(range(start, end), loader):
            with torch.autocast(info.device.type, dtype=torch.float16, enabled=use_amp):
                out = self.task.training_step(model, batch, info.device)
            loss = out.loss
            if not torch.isfinite(loss.detach()):
                raise TrainingError(
                    f"step {step_index + 1}: loss is {loss.item()} (diverged); lower optim.lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            params = [p for p in core.parameters() if p.grad is not None]
            clip = self.optim_config.grad_clip
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step = step_index + 1

            _accumulate(window, names, {"loss": float(loss.detach()), "grad_norm": float(grad_norm), **out.metrics})
            window_steps += 1
            if self._budget_s > 0:  # every process must stop at the same step: rank 0 decides
                budget_reached = bool(broadcast_object(self._train_seconds() >= self._budget_s))
            if step % cfg.log_every == 0 or step == end or budget_reached:
                reduced = all_reduce_sum(window, info.device)
                averaged = {n: float(reduced[0, i] / reduced[1, i]) for i, n in enumerate(names) if reduced[1, i] > 0}
                averaged["lr"] = lr
                averaged["sec_per_step"] = (time.perf_counter() - window_start) / window_steps
                averaged["epoch"] = sampler.epoch_of(step)
                last_metrics = averaged
                if logger is not None:
                    logger.log(step, "train", averaged)
                if progress is not None:
                    progress.set_postfix(loss=f"{averaged['loss']:.4f}", lr=f"{lr:.2e}")
                window.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if progress is not None:
                progress.update(1)

            if budget_reached:
                break  # checkpoint, validation and export follow, as at the last step
            if cfg.val_every and step % cfg.val_every == 0 and step != cfg.steps:
                validation = self._validate(info, core, model, step, logger) or validation
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != end:
                self._checkpoint(info, core, optimizer, scheduler, scaler, step)

        if progress is not None:
            progress.close()
        train_seconds = self._train_seconds()
        self._seconds_before, self._loop_start = train_seconds, None
        finished = step >= cfg.steps or budget_reached
        if step > start or state is None:
            self._checkpoint(info, core, optimizer, scheduler, scaler, step)
        exported = None
        if finished:
            validation = self._validate(info, core, model, step, logger) or validation
            if info.is_main:
                exported = self.task.export(core, self.run_dir, step, {**last_metrics, **validation})
            barrier()
        if logger is not None:
            logger.close()
            if (self.run_dir / CSV_NAME).exists():
                plot_curves(
                    self.run_dir / CSV_NAME, self.run_dir / PLOT_NAME, title=f"{self.task.name} ({self.run_dir.name})"
                )
        seconds = time.perf_counter() - started
        stopped_by = "steps" if step >= cfg.steps else "time budget" if budget_reached else "stop_at_step"
        return TrainResult(
            self.run_dir,
            step,
            finished,
            last_metrics,
            validation,
            exported,
            seconds,
            str(info.device),
            info.world_size,
            stopped_by,
            train_seconds,
        )

    # --------------------------------------------------------------------------- helpers
    def _validate(
        self, info: DistInfo, core: nn.Module, model: nn.Module, step: int, logger: MetricsLogger | None
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if info.is_main:
            rng = capture_rng_state()  # validation must not shift the training's random streams
            core.eval()
            try:
                with torch.no_grad():
                    metrics = self.task.validate(core, info.device, step) or {}
            finally:
                core.train()
                restore_rng_state(rng)
            if metrics and logger is not None:
                logger.log(step, "val", metrics)
                plot_curves(
                    self.run_dir / CSV_NAME, self.run_dir / PLOT_NAME, title=f"{self.task.name} ({self.run_dir.name})"
                )
        model.train()
        metrics = broadcast_object(metrics)
        barrier()
        return metrics

    def _checkpoint(self, info: DistInfo, core: nn.Module, optimizer, scheduler, scaler, step: int) -> None:
        rng_states = _gather_rng_states(info)
        if info.is_main:
            save_checkpoint(
                self.run_dir,
                step,
                {
                    "step": step,
                    "model": core.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_states,
                    "world_size": info.world_size,
                    "config": self.config_record,
                    "task": self.task.name,
                    "train_seconds": self._train_seconds(),
                },
                keep=self.config.keep_checkpoints,
            )
        barrier()


def _gather_rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """RNG state of every process (rank order), so each resumes its own streams."""
    own = capture_rng_state()
    if not info.distributed:
        return [own]
    import torch.distributed as dist

    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, own)
    return gathered


def _accumulate(window: torch.Tensor, names: list[str], metrics: dict[str, float | tuple[float, float]]) -> None:
    for name, value in metrics.items():
        try:
            i = names.index(name)
        except ValueError:
            raise TrainingError(f"metric {name!r} is not among the task's metric_names {names[2:]}") from None
        total, count = value if isinstance(value, tuple) else (float(value), 1.0)
        window[0, i] += total
        window[1, i] += count
