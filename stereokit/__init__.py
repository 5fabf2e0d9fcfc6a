"""stereokit: train StereoNet on SceneFlow and carry it to a deployable integer model."""

__version__ = "0.1.0"
