"""``python -m ov3d_training.sim --scenes 100 --seed 0 --out data/sim``."""

import sys

from .cli import cli

if __name__ == "__main__":
    sys.exit(cli())
