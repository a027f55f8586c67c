"""A ROS 2 workspace as its users build it: the repository cloned into ws/src, a plain
`colcon build`, `source install/setup.bash`. Both sibling packages (ov3d_msgs, ov3d_ros) are found
and built; the offline training package is skipped; the installed ones answer `ros2 pkg`,
`ros2 interface` and `ros2 launch`.

colcon comes from the registry (the test extra). ament_cmake comes from the registry's ros-jazzy
wheels instead of a system ROS 2, so the build gets the two CMake arguments `ov3d-build-msgs` also
passes (the wheels' Python, and the helper that drops the wheels' missing include directories);
with a system ROS 2 sourced, plain `colcon build` needs neither.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COLCON = Path(sys.executable).parent / "colcon"


def _checkout_copy(dest: Path) -> None:
    """The repository as a clone has it: tracked and untracked-not-ignored files (no .venv, runs/)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    if not COLCON.is_file() or shutil.which("git") is None:
        pytest.fail(f"colcon ({COLCON}) or git missing: install the test extra")
    ws = tmp_path_factory.mktemp("ws")
    _checkout_copy(ws / "src" / "ov3d")
    return ws


def _colcon_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH")
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_colcon_finds_both_packages_and_skips_training(workspace):
    done = subprocess.run(
        [str(COLCON), "list"], cwd=workspace, env=_colcon_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = {line.split("\t")[0]: line.split("\t")[2] for line in done.stdout.splitlines() if line.strip()}
    assert found == {"ov3d_msgs": "(ros.ament_cmake)", "ov3d_ros": "(ros.ament_python)"}, done.stdout


@pytest.fixture(scope="module")
def built(workspace) -> Path:
    from ov3d_ros.node.build_interfaces import CMAKE_HELPER, ament_prefixes

    env = _colcon_env()
    search = os.pathsep.join(str(p) for p in ament_prefixes())  # the wheels' ament_cmake, rosidl
    env.update(AMENT_PREFIX_PATH=search, CMAKE_PREFIX_PATH=search)
    done = subprocess.run(
        [
            str(COLCON),
            "build",
            "--event-handlers",
            "console_direct-",
            "--cmake-args",
            f"-DCMAKE_PROJECT_INCLUDE={CMAKE_HELPER}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    finished = {line.split()[2] for line in done.stdout.splitlines() if line.startswith("Finished <<< ")}
    assert finished == {"ov3d_msgs", "ov3d_ros"}, done.stdout[-2000:]
    return workspace / "install"


def _sourced(install: Path, command: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`source install/setup.bash && COMMAND`, from a folder outside the checkout."""
    return subprocess.run(
        ["bash", "-c", f"source {install}/setup.bash && {command}"],
        cwd=tmp_path,
        env=_colcon_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_installed_packages_answer_ros2(built, ros2_tools, tmp_path):
    done = _sourced(built, "ros2 pkg prefix ov3d_ros && ros2 pkg prefix ov3d_msgs", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(built / "ov3d_ros"), str(built / "ov3d_msgs")]
    done = _sourced(built, "ros2 interface show ov3d_msgs/srv/SetQuery", tmp_path)
    assert done.returncode == 0 and "string[] positives" in done.stdout, done.stdout + done.stderr
    done = _sourced(built, "ros2 launch ov3d_ros segment.launch.py --show-args", tmp_path)
    assert done.returncode == 0 and "'demo':" in done.stdout and "'autostart':" in done.stdout, (
        done.stdout + done.stderr
    )


def test_python_imports_the_installed_copies(built, tmp_path):
    probe = (
        "import ov3d_ros, ov3d_msgs.srv; from ov3d_ros.node.interfaces import load_ov3d_msgs; "
        "print(ov3d_ros.__file__); print(ov3d_msgs.srv.__file__); print(load_ov3d_msgs().available)"
    )
    done = _sourced(built, f'python3 -c "{probe}"', tmp_path)
    assert done.returncode == 0, done.stderr
    node_code, msgs_code, available = done.stdout.split()
    assert node_code.startswith(str(built / "ov3d_ros")) and msgs_code.startswith(str(built / "ov3d_msgs"))
    assert available == "True"
