"""Run the README's `ros2 ...` commands as a user would: real processes, one ROS domain per launch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMAND_TIMEOUT_S = 120.0


def ros2_env(domain_id: int, msgs_prefix: Path) -> dict[str, str]:
    """The environment of a user whose venv is active and whose ov3d_msgs live in ``msgs_prefix``
    (as after `ov3d-build-msgs --prefix PREFIX` and exporting its paths)."""
    site = msgs_prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def prepend(name: str, value: str) -> str:
        return os.pathsep.join(p for p in (value, os.environ.get(name, "")) if p)

    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
        OV3D_MSGS_PREFIX=str(msgs_prefix),
    )
    env["PATH"] = prepend("PATH", str(Path(sys.executable).parent))  # the venv's python3 and ros2
    env["PYTHONPATH"] = prepend("PYTHONPATH", str(site))
    env["LD_LIBRARY_PATH"] = prepend("LD_LIBRARY_PATH", str(msgs_prefix / "lib"))
    env["AMENT_PREFIX_PATH"] = prepend("AMENT_PREFIX_PATH", str(msgs_prefix))
    return env


def run(
    command: str, env: dict[str, str], cwd: Path, timeout_s: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """One README command line, through the shell as typed; on a time-out the whole command ends."""
    proc = subprocess.Popen(
        command,
        shell=True,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


class Launched:
    """`ros2 launch ...` as its own process group, its output in a log file."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.log_path = cwd / "launch.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open for the process's life, closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            command, shell=True, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.env, self.cwd = env, cwd

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.2)
        return False

    def stop(self) -> int:
        """Ctrl-C as a user would; the whole group is killed if it does not end in 30 s.
        Returns 0 for a clean end by Ctrl-C (launch re-raises SIGINT: -2 or 130)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        try:  # the node (a child of launch) must not outlive it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run("ros2 daemon stop", self.env, self.cwd)  # started by the ros2 commands of this domain
        self._log.close()
        return 0 if code in (-signal.SIGINT, 128 + signal.SIGINT) else code
