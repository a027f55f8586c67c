"""``trainer.max_minutes``: a wall-clock budget ends a run with a checkpoint, validation and export,
and the LR's cosine reaches its floor at the budget's end."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from ov3d_training.trainer.config import ConfigError, OptimConfig, TrainerConfig
from ov3d_training.trainer.distributed import DistInfo
from ov3d_training.trainer.loop import StepOutput, Trainer, cosine_with_warmup
from ov3d_training.trainer.state import list_checkpoints, load_checkpoint

STEP_SECONDS = 0.05


class _Items(Dataset):
    """Fixed noisy samples of y = 3x - 1 (items are looked up by (epoch, index) keys)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 1, generator=g)
        self.y = 3 * self.x - 1 + 0.01 * torch.randn(64, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):
        index = key[1] if isinstance(key, tuple) else key
        return self.x[index], self.y[index]


class SlowLineFit:
    """A real (small) task: fit a line; each step also waits STEP_SECONDS, as a big model would."""

    name = "line"
    metric_names = ("mse",)

    def __init__(self) -> None:
        self.exported: list[int] = []
        self.validated: list[int] = []

    def prepare(self, info: DistInfo, run_dir: Path) -> None:
        pass

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1)

    def train_dataset(self) -> Dataset:
        return _Items()

    def collate(self, items):
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def training_step(self, model, batch, device) -> StepOutput:
        time.sleep(STEP_SECONDS)
        x, y = (t.to(device) for t in batch)
        loss = ((model(x) - y) ** 2).mean()
        return StepOutput(loss, {"mse": float(loss.detach())})

    def validate(self, model, device, step) -> dict[str, float]:
        self.validated.append(step)
        return {"weight": float(model.weight.detach().cpu())}

    def export(self, model, run_dir, step, metrics):
        self.exported.append(step)
        path = Path(run_dir) / "model.pt"
        torch.save(model.state_dict(), path)
        return path


def _trainer(task, run_dir: Path, minutes: float, resume: bool = False) -> Trainer:
    config = TrainerConfig(
        steps=100_000,
        batch_size=4,
        num_workers=0,
        log_every=1000,
        val_every=0,
        checkpoint_every=0,
        amp=False,
        device="cpu",
        progress=False,
        max_minutes=minutes,
    )
    return Trainer(task, config, OptimConfig(lr=0.05, warmup_steps=2), seed=0, run_dir=run_dir, resume=resume)


def test_time_budget_ends_the_run_with_checkpoint_validation_and_export(tmp_path):
    budget_s = 0.6
    task = SlowLineFit()
    result = _trainer(task, tmp_path, budget_s / 60).fit()

    # stopped by the clock, long before trainer.steps, after about budget / step time steps
    assert result.stopped_by == "time budget" and result.finished
    assert budget_s <= result.train_seconds < budget_s + 5 * STEP_SECONDS + 1.0
    assert 3 <= result.step <= budget_s / STEP_SECONDS + 1
    # the end of a budget is the end of the run: checkpoint (with its time), validation, export
    [(step, path)] = list_checkpoints(tmp_path)
    assert step == result.step
    assert load_checkpoint(path)["train_seconds"] == pytest.approx(result.train_seconds)
    assert task.validated == [result.step] and task.exported == [result.step]
    assert (tmp_path / "model.pt").is_file()
    # the last steps' losses are logged although log_every was never reached
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["name"] == "lr"]
    assert [int(r["step"]) for r in rows] == [result.step]
    # the cosine followed the clock: the last step's LR is near the floor, not near the peak
    assert float(rows[0]["value"]) < 0.05 * 0.25


def test_a_resumed_budgeted_run_counts_the_time_already_spent(tmp_path):
    first = _trainer(SlowLineFit(), tmp_path, 0.4 / 60).fit()
    task = SlowLineFit()
    again = _trainer(task, tmp_path, 0.4 / 60, resume=True).fit()
    assert again.step == first.step  # its budget was used up: no further step
    assert again.stopped_by == "time budget" and again.finished
    assert again.train_seconds == pytest.approx(first.train_seconds, abs=0.05)  # the spent time, carried over


def test_time_progress_moves_the_cosine_and_bad_budgets_are_refused():
    assert cosine_with_warmup(20, 100_000, 10, 0.01, time_progress=1.0) == pytest.approx(0.01)
    assert cosine_with_warmup(20, 100_000, 10, 0.01, time_progress=0.5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine_with_warmup(5, 100_000, 10, 0.01, time_progress=0.9) == pytest.approx(0.6)  # warmup is by step
    assert cosine_with_warmup(90, 100, 10, 0.01, time_progress=0.1) == cosine_with_warmup(90, 100, 10, 0.01)
    with pytest.raises(ConfigError, match="max_minutes"):
        TrainerConfig(max_minutes=-1)
