"""Models: timm backbones with ArcFace or linear heads, and loading a trained run's model."""

from fertrain.models.factory import FerNet, build_model, load_initial_weights, normalization_of, pooled_width
from fertrain.models.heads import ArcFaceHead, LinearHead
from fertrain.models.loading import build_from_spec, load_run_model, model_spec

__all__ = ["ArcFaceHead", "FerNet", "LinearHead", "build_from_spec", "build_model", "load_initial_weights",
           "load_run_model", "model_spec", "normalization_of", "pooled_width"]  # fmt: skip
