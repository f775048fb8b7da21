"""The training engine: one loop, checkpointing, resume, evaluation and logging for every trainer."""

from fertrain.engine.config import TrainConfig, resolve_config
from fertrain.engine.device import autocast_for, configure_cpu_threads, resolve_device, seed_everything
from fertrain.engine.trainer import Batch, Trainer, TrainResult, run_training

__all__ = ["Batch", "TrainConfig", "TrainResult", "Trainer", "autocast_for", "configure_cpu_threads",
           "resolve_config", "resolve_device", "run_training", "seed_everything"]  # fmt: skip
