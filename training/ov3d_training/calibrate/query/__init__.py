"""Per-model calibration of the one-query rule (``ov3d-train calibrate-query``).

* :mod:`.search`  the grid search (exclude x alias x margin, dataset-level mean single-query IoU);
* :mod:`.cli`     ``add_arguments`` / ``main``: prints the result, ``--install`` records it in model.json.
"""
