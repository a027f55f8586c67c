"""The node's vocabulary switch (use_vocabulary): default, the QuerySet it makes, validation, re-query."""

from __future__ import annotations

from pathlib import Path

import yaml

from ov3d_ros.node.parameters import SPECS, NodeSettings, validate_changes, validate_value

CONFIG = Path(__file__).resolve().parents[2] / "ov3d_ros" / "config" / "segment.yaml"


def test_vocabulary_is_on_by_default_and_reaches_the_query_set():
    spec = SPECS["use_vocabulary"]
    assert spec.default is True and spec.dynamic
    settings = NodeSettings.from_values({})
    assert settings.query_set().vocabulary is True and settings.query_set().uses_vocabulary
    off = settings.replace(use_vocabulary=False)
    assert off.query_set().vocabulary is False and not off.query_set().uses_vocabulary
    # independent of the canonical background phrases
    assert settings.replace(use_background=False).query_set().uses_vocabulary
    doc = yaml.safe_load(CONFIG.read_text())["/**/segment_node"]["ros__parameters"]
    assert doc["use_vocabulary"] is True


def test_vocabulary_switch_is_validated_and_changes_at_run_time():
    assert "must be bool" in validate_value("use_vocabulary", 1)
    assert "must be bool" in validate_value("use_vocabulary", "false")
    assert validate_changes({"use_vocabulary": False}, running=True) is None


def test_changing_the_switch_re_queries_the_cached_cloud():
    from ov3d_ros.node.segment_node import QUERY_PARAMETERS

    assert "use_vocabulary" in QUERY_PARAMETERS
