"""Per-model GGP calibration on held-out simulated rooms (``ov3d-train calibrate``).

* :mod:`.ggp`  the search (tau and T per pooling variant, dataset-level mIoU) and the rooms' labels;
* :mod:`.cli`  ``add_arguments`` / ``main``: prints the result, ``--install`` records it in model.json.
"""
