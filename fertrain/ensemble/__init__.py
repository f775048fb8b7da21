"""Teachers as one source of logits: single runs and weighted ensembles (e.g. RN18 0.7 : B3 0.3).

Names are imported from their submodules on first use (see `fertrain.lazy`): an ONNX-only
consumer of this package's neighbours does not load timm."""

from fertrain.lazy import lazy_exports

_EXPORTS = {"fuse": "fusion", "search_weights": "fusion", "Teacher": "teacher", "load_teacher": "teacher",
            "parse_member": "teacher", "write_ensemble": "teacher"}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
