"""Student distillation: losses returning dicts of named terms, unfreezing policies, the trainer."""

from fertrain.distill.losses import (
    FEATURE_LOSSES,
    LOSSES,
    CELoss,
    CombinedLoss,
    CRDLoss,
    DKDLoss,
    KDLoss,
    MMDLoss,
    RKDLoss,
    kl_at_temperature,
)

__all__ = ["FEATURE_LOSSES", "LOSSES", "CELoss", "CRDLoss", "CombinedLoss", "DKDLoss", "KDLoss", "MMDLoss", "RKDLoss",
           "kl_at_temperature"]  # fmt: skip
