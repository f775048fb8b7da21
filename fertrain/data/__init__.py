"""Data path: uint8 faces from workers, float work batched on the training device."""

from fertrain.data.augment import AugmentConfig, augment_batch, augment_config, step_generator, to_model_input
from fertrain.data.dataset import FaceArrays, ManifestFaces, collate_faces, face_loader
from fertrain.data.order import epoch_length, epoch_order
from fertrain.data.preprocess import PreprocessSpec, color_mode_of, load_prepared, prepare_face

__all__ = [
    "AugmentConfig",
    "FaceArrays",
    "ManifestFaces",
    "PreprocessSpec",
    "augment_batch",
    "augment_config",
    "collate_faces",
    "color_mode_of",
    "epoch_length",
    "epoch_order",
    "face_loader",
    "load_prepared",
    "prepare_face",
    "step_generator",
    "to_model_input",
]  # fmt: skip
