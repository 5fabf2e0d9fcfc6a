"""StereoNet: the model, its loss and its post-process."""

from stereokit.data.validity import valid_mask
from stereokit.models.loss import multiscale_loss
from stereokit.models.postprocess import DeployModel, pad_to_multiple, postprocess, predict
from stereokit.models.stereonet import StereoNet, build_stereonet

__all__ = [
    "DeployModel",
    "StereoNet",
    "build_stereonet",
    "multiscale_loss",
    "pad_to_multiple",
    "postprocess",
    "predict",
    "valid_mask",
]
