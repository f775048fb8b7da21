"""Models: timm backbones with ArcFace or linear heads."""

from fertrain.models.factory import FerNet, build_model, load_initial_weights, normalization_of
from fertrain.models.heads import ArcFaceHead, LinearHead

__all__ = ["ArcFaceHead", "FerNet", "LinearHead", "build_model", "load_initial_weights", "normalization_of"]
