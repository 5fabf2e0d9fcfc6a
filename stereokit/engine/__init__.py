"""Training and evaluation: the loop, schedules, checkpoints, metrics, distributed helpers."""
