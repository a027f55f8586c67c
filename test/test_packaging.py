"""The robot's package stands alone: ov3d_ros neither requires nor imports the offline training
package (simulator, pybullet, tensorboard); ov3d_training is its own distribution built on it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires

TRAINING_ONLY = {"ov3d_training", "pybullet", "tensorboard"}


def _base_requirements(distribution: str) -> set[str]:
    """Names of a distribution's requirements outside any extra."""
    names = set()
    for requirement in requires(distribution) or []:
        if "extra ==" not in requirement:
            names.add(re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("-", "_"))
    return names


def test_the_robot_install_pulls_no_training_dependency():
    assert not _base_requirements("ov3d_ros") & TRAINING_ONLY


def test_the_training_distribution_builds_on_the_robot_package():
    assert {"ov3d_ros", "pybullet", "tensorboard"} <= _base_requirements("ov3d_training")


def test_every_robot_module_imports_without_the_training_package():
    """Each ov3d_ros module imports with ov3d_training, pybullet and tensorboard made unimportable
    (as on a robot); developer commands that pack training data import it inside the command."""
    probe = f"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(TRAINING_ONLY)!r}:
            raise ImportError(f"{{name}} is not installed on a robot")
sys.meta_path.insert(0, Block())
import ov3d_ros
for module in pkgutil.walk_packages(ov3d_ros.__path__, "ov3d_ros."):
    importlib.import_module(module.name)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
