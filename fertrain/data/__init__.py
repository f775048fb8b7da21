"""Data path: uint8 faces from workers, float work batched on the training device.

Names are imported from their submodules on first use (see `fertrain.lazy`): serving code that
needs only `fertrain.data.preprocess` (OpenCV and NumPy) does not load torch."""

from fertrain.lazy import lazy_exports

_EXPORTS = {
    "AugmentConfig": "augment", "augment_batch": "augment", "augment_config": "augment", "augment_params": "augment",
    "step_generator": "augment", "step_seed": "augment", "to_model_input": "augment", "FaceArrays": "dataset",
    "ManifestFaces": "dataset",
    "collate_faces": "dataset", "face_loader": "dataset", "epoch_length": "order", "epoch_order": "order",
    "PreprocessSpec": "preprocess", "color_mode_of": "preprocess", "load_prepared": "preprocess",
    "prepare_face": "preprocess",
}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
