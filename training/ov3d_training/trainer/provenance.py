"""Where a trained artefact came from: the git commit of the code that made it."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str | None:
    """HEAD of the repository holding this package (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
