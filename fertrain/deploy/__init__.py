"""Deployment: face detection and alignment, `Recognizer` (the Python API), `fertrain predict`.

Names are imported from their submodules on first use (see `fertrain.lazy`)."""

from fertrain.lazy import lazy_exports

_EXPORTS = {"Face": "recognizer", "Recognizer": "recognizer", "read_image": "recognizer",
            "make_detector": "detect", "predict_paths": "predict", "write_rows": "predict"}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
