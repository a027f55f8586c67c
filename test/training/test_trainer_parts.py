"""The shared trainer's parts: config from YAML, data order, LR schedule, checkpoints, logs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from ov3d_training.mpec.config import MPECConfig, load_mpec_config
from ov3d_training.trainer.config import ConfigError, OptimConfig, dump_yaml, from_dict, to_dict
from ov3d_training.trainer.loop import cosine_with_warmup, parameter_groups
from ov3d_training.trainer.metrics_logger import MetricsLogger, plot_curves, read_curves
from ov3d_training.trainer.sampler import GlobalBatchSampler
from ov3d_training.trainer.state import (
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "training" / "configs"


# ------------------------------------------------------------------------------------ config
@dataclass
class Inner:
    size: tuple[int, int] = (1, 2)
    name: str = "x"


@dataclass
class Outer:
    rate: float = 0.1
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None


def test_from_dict_converts_and_validates():
    cfg = from_dict(Outer, {"rate": 1, "inner": {"size": [3, 4]}, "maybe": 5})
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float) and cfg.inner.size == (3, 4) and cfg.maybe == 5
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Outer, {"rat": 1})
    with pytest.raises(ConfigError, match=r"inner.size"):
        from_dict(Outer, {"inner": {"size": [1, 2, 3]}})
    with pytest.raises(ConfigError, match="number"):
        from_dict(Outer, {"rate": "fast"})


def test_recipes_load_and_round_trip(tmp_path):
    default = load_mpec_config(REPO_CONFIGS / "mpec_default.yaml")
    assert to_dict(default) == to_dict(MPECConfig())  # the YAML spells out the code defaults
    assert default.loss.alpha == 1.0 and default.loss.beta == 6.0
    assert default.data.mask.cell_size == 0.1 and default.data.mask.ratio == 0.4
    tiny = load_mpec_config(REPO_CONFIGS / "mpec_tiny.yaml")
    dump_yaml(tiny, tmp_path / "c.yaml")
    assert to_dict(load_mpec_config(tmp_path / "c.yaml")) == to_dict(tiny)
    with pytest.raises(ConfigError, match=r"0\.5"):
        from_dict(MPECConfig, {"data": {"mask": {"ratio": 0.7}}})


def test_the_shipped_models_cpu_recipe_differs_from_the_default_only_where_its_header_says():
    cpu, default = to_dict(load_mpec_config(REPO_CONFIGS / "mpec_cpu.yaml")), to_dict(MPECConfig())
    changed = {
        f"{section}.{key}"
        for section in default
        if isinstance(default[section], dict)
        for key in default[section]
        if cpu[section][key] != default[section][key]
    }
    assert changed == {
        "trainer.steps",
        "trainer.batch_size",
        "trainer.num_workers",
        "trainer.val_every",
        "trainer.checkpoint_every",
        "trainer.cpu_threads",
        "optim.warmup_steps",
        "data.voxel_size",
        "data.max_points",
        "model.channels",
        "model.blocks",
        "model.decoder_blocks",
        "model.adapter_hidden",
    }
    assert cpu["data"]["voxel_size"] == 0.05 and cpu["data"]["augment"]["keep_ratio"] == [0.35, 1.0]


# ---------------------------------------------------------------------------------- sampler
def test_global_batches_do_not_depend_on_the_number_of_processes():
    one = GlobalBatchSampler(7, 4, seed=3, end_step=6)
    two = [GlobalBatchSampler(7, 4, seed=3, rank=r, world_size=2, end_step=6) for r in range(2)]
    for step, batch in enumerate(one):
        assert batch == two[0].local_keys(step) + two[1].local_keys(step)
    # epochs are permutations: every scan once per epoch
    keys = [k for step in range(7) for k in one.global_keys(step)]  # 28 = 4 epochs of 7
    for epoch in range(4):
        assert sorted(i for e, i in keys if e == epoch) == list(range(7))
    # resuming at step 3 yields the same batches as steps 3.. of a full pass
    resumed = GlobalBatchSampler(7, 4, seed=3, start_step=3, end_step=6)
    assert list(resumed) == list(one)[3:]
    with pytest.raises(ValueError, match="multiple"):
        GlobalBatchSampler(7, 3, seed=0, world_size=2, end_step=1)


def test_cosine_schedule_with_warmup():
    assert cosine_with_warmup(0, 100, 10, 0.01) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 100, 10, 0.01) == pytest.approx(1.0)
    assert cosine_with_warmup(10, 100, 10, 0.01) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 100, 10, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine_with_warmup(100, 100, 10, 0.01) == pytest.approx(0.01)


def test_no_weight_decay_on_biases_norms_and_tokens():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model.token = torch.nn.Parameter(torch.zeros(3))
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4
    assert OptimConfig().weight_decay == 0.05


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(2) * step}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 6]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 6)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    # a stray temporary from a crash mid-write is never taken for a checkpoint
    (tmp_path / "checkpoints" / "step_000000008.pt.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 6)
    assert load_checkpoint(latest_checkpoint(tmp_path))["w"].tolist() == [6.0, 6.0]


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_checkpoint(tmp_path, 1, {"rng": [state]}, keep=1)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(latest_checkpoint(tmp_path))["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# ---------------------------------------------------------------------------------- logging
def test_metrics_log_truncates_on_resume_and_plots(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        logger.log(step, "train", {"loss": 1.0 / step, "lr": 0.1})
    logger.log(4, "val", {"f_miou": 12.5})
    logger.close()
    resumed = MetricsLogger(tmp_path, resume_step=3, tensorboard=False)  # steps 4, 5 will be redone
    resumed.log(4, "train", {"loss": 0.3, "lr": 0.1})
    resumed.close()
    curves = read_curves(tmp_path / "metrics.csv")
    assert curves["train"]["loss"][0] == [1, 2, 3, 4]
    assert curves["train"]["loss"][1][-1] == 0.3
    assert "val" not in curves  # the step-4 validation was after the checkpoint
    png = plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
