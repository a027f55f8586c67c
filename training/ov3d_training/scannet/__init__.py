"""Real ScanNet rooms as training data: instance labels -> entities with captions and referrals.

The simulator writes an ``annotations.json`` for every room it renders (:mod:`..sim.annotations`).
A real scan has instance and NYU40 labels but no texts; :mod:`.room` measures its entities (boxes,
how each rests), :mod:`.annotate` words them with the simulator's own caption and relation code,
and :mod:`.cli` (``ov3d-train scannet-rooms``) writes the scans with their sidecars into a training
folder. A model trained on these inherits ScanNet's terms of use (non-commercial research).
"""
