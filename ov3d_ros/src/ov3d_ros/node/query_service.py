"""``~/set_query`` (ov3d_msgs/srv/SetQuery): a request -> the parameter changes it asks for.

Pure Python apart from the request object, so the rules are tested without a node: at least
one positive, NaN threshold and empty negatives keep the node's values, the background switch
and the vocabulary switch are KEEP / ON / OFF. The node applies the changes atomically through its parameters (one
validation for topic, service and ``ros2 param set``) and answers with the query in force.
"""

from __future__ import annotations

import math
from typing import Any

from ov3d_ros.core.types import QueryError, QuerySet

BACKGROUND_KEEP, BACKGROUND_ON, BACKGROUND_OFF = 0, 1, 2


def query_changes(request: Any) -> dict[str, Any]:
    """Parameter name -> value for a SetQuery request; QueryError (with the reason) if unusable."""
    positives = [str(name) for name in request.positives]
    negatives = [str(name) for name in request.negatives]
    if any(";" in name for name in positives + negatives):
        raise QueryError("a name may not contain ';' (give each name as its own list entry)")
    if not [name for name in positives if name.strip()]:
        raise QueryError("no positives given: name at least one thing to find")
    threshold = float(request.threshold)
    changes: dict[str, Any] = {"queries": "; ".join(positives)}
    if negatives:
        changes["negatives"] = "; ".join(negatives)
    if not math.isnan(threshold):
        if not 0.0 <= threshold <= 1.0:
            raise QueryError(f"threshold must be NaN (keep the node's) or within 0..1, got {threshold:g}")
        changes["score_threshold"] = threshold
    background = int(request.background)
    if background not in (BACKGROUND_KEEP, BACKGROUND_ON, BACKGROUND_OFF):
        raise QueryError(f"background must be 0 (keep), 1 (on) or 2 (off), got {background}")
    if background != BACKGROUND_KEEP:
        changes["use_background"] = background == BACKGROUND_ON
    vocabulary = int(request.vocabulary)
    if vocabulary not in (BACKGROUND_KEEP, BACKGROUND_ON, BACKGROUND_OFF):
        raise QueryError(f"vocabulary must be 0 (keep), 1 (on) or 2 (off), got {vocabulary}")
    if vocabulary != BACKGROUND_KEEP:
        changes["use_vocabulary"] = vocabulary == BACKGROUND_ON
    QuerySet.parse(changes["queries"], negatives=changes.get("negatives", ""))  # the same parser as the node's
    return changes
