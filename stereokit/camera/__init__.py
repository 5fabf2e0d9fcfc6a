"""Camera geometry: the rig model and its calibration, rectification, depth and point clouds.

Knows nothing of models, runs or services: every function takes arrays and a Rig.
"""
