"""``--resume`` continues exactly: the same loss curve and the same weights as an uninterrupted run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mpec_synthetic import write_recordings
from safetensors.torch import load_file

from ov3d_training.cli import main
from ov3d_training.trainer.state import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "training" / "configs" / "mpec_tiny.yaml"


def _rows(run: Path) -> list[tuple[str, str, str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [
            (r["step"], r["split"], r["name"], r["value"])
            for r in csv.DictReader(handle)
            if r["name"] != "sec_per_step"
        ]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    write_recordings(folder, 3, seed=30)
    return folder


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(recordings, tmp_path):
    args = ["mpec", "--config", str(TINY), "--data", str(recordings)]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    assert main([*args, "--out", str(tmp_path / "cut"), "--stop-at-step", "2"]) == 0
    assert [s for s, _ in list_checkpoints(tmp_path / "cut")] == [2]
    assert not (tmp_path / "cut" / "teacher").exists()  # not finished: no teacher yet
    assert main(["mpec", "--out", str(tmp_path / "cut"), "--resume"]) == 0

    full, cut = _rows(tmp_path / "full"), _rows(tmp_path / "cut")
    assert [r[:3] for r in full] == [r[:3] for r in cut]
    assert full == cut  # every logged value identical, bit for bit
    a = load_file(tmp_path / "full" / "teacher" / "teacher.safetensors")
    b = load_file(tmp_path / "cut" / "teacher" / "teacher.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for run in ("full", "cut"):
        assert (tmp_path / run / "curves.png").is_file()
        assert any((tmp_path / run / "tensorboard").iterdir())


def test_resume_refuses_a_different_recipe_and_a_missing_run(recordings, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["mpec", "--config", str(TINY), "--data", str(recordings), "--out", str(out), "--stop-at-step", "1"]) == 0
    )
    other = tmp_path / "other.yaml"
    other.write_text(TINY.read_text().replace("lr: 0.003", "lr: 0.001"))
    assert main(["mpec", "--config", str(other), "--out", str(out), "--resume"]) == 2
    assert "differs" in capsys.readouterr().err
    assert main(["mpec", "--config", str(TINY), "--data", str(recordings), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["mpec", "--out", str(tmp_path / "nothing"), "--resume"]) == 2


def test_cli_rejects_bad_input(tmp_path, capsys, scannet_npz):
    assert main(["mpec", "--config", str(TINY), "--data", str(scannet_npz), "--out", str(tmp_path / "a")]) == 2
    assert "evaluation" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  stepz: 3\n")
    assert main(["mpec", "--config", str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert "stepz" in capsys.readouterr().err
    assert main(["mpec", "--config", str(TINY), "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_is_wired():
    # the entry point in setup.py: ov3d-train = ov3d_training.cli:main
    out = subprocess.run(
        [sys.executable, "-m", "ov3d_training.cli", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    assert out.returncode == 0 and "mpec" in out.stdout and "distill" in out.stdout and "sim" in out.stdout
