"""Student distillation: losses (CE, KD, DKD, RKD, MMD) returning dicts of named terms."""

from fertrain.distill.losses import CELoss, DKDLoss, KDLoss, MMDLoss, RKDLoss, kl_at_temperature

__all__ = ["CELoss", "DKDLoss", "KDLoss", "MMDLoss", "RKDLoss", "kl_at_temperature"]
