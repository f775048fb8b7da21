"""The training engine: one loop, checkpointing, resume, evaluation and logging for every trainer.

Names are imported from their submodules on first use (see `fertrain.lazy`): serving code that
needs only `fertrain.engine.evaluate` does not load the trainer, timm's optimizers or torchvision."""

from fertrain.lazy import lazy_exports

_EXPORTS = {"TrainConfig": "config", "resolve_config": "config", "autocast_for": "device",
            "configure_cpu_threads": "device", "resolve_device": "device", "seed_everything": "device",
            "Batch": "trainer", "Trainer": "trainer", "TrainResult": "trainer", "run_training": "trainer"}  # fmt: skip
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
