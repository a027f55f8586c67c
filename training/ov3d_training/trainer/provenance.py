"""Where a trained artefact came from (shared with the inference core's checkpoints)."""

from ov3d_ros.core.provenance import file_sha256, git_commit

__all__ = ["file_sha256", "git_commit"]
