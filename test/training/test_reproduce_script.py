"""The one command that rebuilds the default model (training/reproduce_default_model.sh).

Running it takes about 2.5 hours (docs/training.md). Here a stand-in ``ov3d-train`` on PATH
parses every call the script makes with the real ``ov3d-train`` argument parser (a renamed flag
fails it), checks that the recipes it names exist, and writes the files the script's next stage
looks for; so the stages chain, a second run resumes instead of starting over, and the script
stops at the first failing stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "reproduce_default_model.sh"

STAND_IN = r"""#!{python}
import json, os, sys
from pathlib import Path
from ov3d_training.cli import build_parser

argv = sys.argv[1:]
with open(os.environ["OV3D_TEST_CALLS"], "a") as log:
    log.write(json.dumps(argv) + "\n")
args = build_parser(argv[0]).parse_args(argv)  # exits 2 on a flag the real CLI does not take
config = getattr(args, "config", None)
if config is not None and not Path(config).is_file():
    sys.exit(f"no recipe {config}")


def write(path, text="{}"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if args.command in ("mpec", "distill"):
    write(Path(args.out) / "config.yaml")  # a training run records its recipe when it starts
if os.environ.get("OV3D_TEST_FAIL") == argv[0]:
    sys.exit(1)  # ... and may die before it ends
if args.command == "sim":
    write(Path(args.out) / f"scene_{args.start + args.scenes - 1:04d}" / "metadata.yaml")
elif args.command == "scannet-rooms":
    (Path(args.out) / "val").mkdir(parents=True, exist_ok=True)
elif args.command == "mpec":
    write(Path(args.out) / "teacher" / "teacher.json")
elif args.command == "distill":
    write(Path(args.out) / "student" / "model.json", json.dumps({"ggp": None}))
elif args.command == "calibrate":
    write(Path(args.student) / "model.json", json.dumps({"ggp": {"calibration": {}}}))
elif args.command == "report":
    write(Path(args.out) / "report.json")
"""


def _run(tmp_path: Path, fail: str | None = None, *options: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "ov3d-train"
    stand_in.write_text(STAND_IN.replace("{python}", sys.executable, 1))
    stand_in.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    calls.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OV3D_TEST_CALLS": str(calls)}
    if fail:
        env["OV3D_TEST_FAIL"] = fail
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "run"), *options],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return done, made


def test_every_stage_is_a_valid_call_and_the_stages_chain(tmp_path):
    done, calls = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [c[0] for c in calls] == ["sim", "scannet-rooms", "mpec", "distill", "sim", "calibrate", "report"]
    sim, rooms, mpec, distill, held_out, calibrate, report = calls
    run = str(tmp_path / "run")
    assert sim[sim.index("--scenes") + 1] == "80" and sim[sim.index("--seed") + 1] == "0"
    # the real rooms: scene0005 and scene0008 held out; the training scans oversampled 5x beside the simulated rooms
    assert rooms[rooms.index("--src") + 1].endswith("shared/data/scannet_rooms")
    assert rooms[rooms.index("--hold-out") + 1 :] == ["scene0005", "scene0008"]
    for stage in (mpec, distill):
        data = stage[stage.index("--data") + 1 :]
        assert data[:2] == [f"{run}/sim", f"{run}/real/train@5"]
    assert mpec[mpec.index("--config") + 1].endswith("training/configs/mpec_cpu_real.yaml")
    assert distill[distill.index("--config") + 1].endswith("training/configs/distill_cpu_real.yaml")
    assert distill[distill.index("--set") + 1] == f"init={REPO}/ov3d_ros/src/ov3d_ros/weights/sim_only"
    assert distill[distill.index("--teacher") + 1] == mpec[mpec.index("--out") + 1] == f"{run}/mpec"
    # the calibration rooms lie outside the training rooms 0-79
    assert int(held_out[held_out.index("--start") + 1]) >= 80 and "--install" in calibrate
    assert report[report.index("--teacher") + 1] == f"{run}/mpec/teacher"
    # every stage done: a second run calls only the report again
    again, calls = _run(tmp_path)
    assert again.returncode == 0 and [c[0] for c in calls] == ["report"]


def test_the_simulation_only_recipe_uses_no_real_rooms(tmp_path):
    done, calls = _run(tmp_path, None, "--sim-only")
    assert done.returncode == 0, done.stderr
    assert [c[0] for c in calls] == ["sim", "mpec", "distill", "sim", "calibrate", "report"]
    _, mpec, distill, *_ = calls
    assert mpec[mpec.index("--config") + 1].endswith("training/configs/mpec_cpu.yaml")
    assert distill[distill.index("--config") + 1].endswith("training/configs/distill_cpu.yaml")
    assert "--set" not in distill and not any("real" in arg or "scannet" in arg for call in calls for arg in call)


def test_a_failing_stage_stops_the_script_and_a_rerun_resumes_it(tmp_path):
    done, calls = _run(tmp_path, fail="distill")
    assert done.returncode != 0 and [c[0] for c in calls] == ["sim", "scannet-rooms", "mpec", "distill"]
    done, calls = _run(tmp_path)  # the run folder exists now: distill resumes, the rest follows
    assert done.returncode == 0, done.stderr
    assert (
        calls[0][:1] == ["distill"]
        and "--resume" in calls[0]
        and [c[0] for c in calls][1:] == ["sim", "calibrate", "report"]
    )
