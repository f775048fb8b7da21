"""Backbones from timm by name, plus a head: `build_model(...)` -> `FerNet`.

`--pretrained` uses timm's hub weights: from the local cache when present, else a download,
which fails at once with a clear message where the hub is unreachable. `--initial-checkpoint`
loads local weights: a timm/torchvision state dict or a fertrain checkpoint.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from fertrain.errors import ConfigError, InputError
from fertrain.labels import NUM_CLASSES
from fertrain.models import lowres  # noqa: F401  (registers the 48-px nets with timm)
from fertrain.models.heads import HEADS
from fertrain.serialization import load_torch_file

HUB_HOST = "huggingface.co"


class FerNet(nn.Module):
    """timm backbone (pooled features) + head. `forward(x)` gives serving logits (no margin)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
        return self.head(self.backbone(x), labels, margin)


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _create_from_cache_only(name: str, extra: dict) -> nn.Module:
    """Offline: cached hub weights or a clear error, never minutes of download retries."""
    import huggingface_hub.constants as hub_constants

    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True  # read at call time by hf_hub_download
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **extra)
    except TypeError:  # an option the model's constructor does not take, not missing weights: the caller names it
        raise
    except Exception as exc:
        raise ConfigError(
            f"--pretrained: weights for {name!r} are not in the local cache and the model hub ({HUB_HOST}) "
            "cannot be reached from this machine; train from scratch or pass --initial-checkpoint PATH "
            f"with local weights (a timm/torchvision state dict or a fertrain checkpoint) [{type(exc).__name__}]"
        ) from None
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def create_backbone(name: str, *, pretrained: bool = False, drop_rate: float = 0.0,
                    drop_path_rate: float = 0.0) -> nn.Module:  # fmt: skip
    """timm's `drop_rate` is the dropout its models apply to the pooled features (with num_classes=0
    too), i.e. right before fertrain's head; `drop_path_rate` is stochastic depth in its residual
    blocks, which models without residual blocks refuse."""
    extra = {"drop_rate": drop_rate} if drop_rate else {}
    if drop_path_rate:
        extra["drop_path_rate"] = drop_path_rate
    try:
        if not pretrained:
            return timm.create_model(name, pretrained=False, num_classes=0, **extra)
        if hub_reachable():
            return timm.create_model(name, pretrained=True, num_classes=0, **extra)
        return _create_from_cache_only(name, extra)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ConfigError(f"--backbone {name!r}: {exc} (see timm.list_models())") from None
        raise
    except TypeError as exc:  # the model's constructor takes no drop_path_rate
        if "drop_path_rate" in str(exc):
            raise ConfigError(f"--drop-path {drop_path_rate:g}: --backbone {name!r} has no stochastic depth (its "
                              "model takes no drop_path_rate); use --drop, or a backbone with residual blocks that "
                              "has it, e.g. fer_resnet18, resnet18, convnext_atto") from None
        raise


def _state_dict_from(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return _state_dict_from(obj[key], path)
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise InputError(path, "not a state dict or a checkpoint with a 'model'/'state_dict' entry", kind="checkpoint")


def load_initial_weights(model: FerNet, path: str | Path) -> dict:
    """Load local weights into the backbone (and the head when shapes match); report what matched."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "--initial-checkpoint: file not found", kind="missing")
    state = _state_dict_from(load_torch_file(path, "--initial-checkpoint"), path)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for cand in (k, f"backbone.{k}"):
            if cand in own and own[cand].shape == v.shape:
                mapped[cand] = v
                break
    if not any(k.startswith("backbone.") for k in mapped):
        raise InputError(path, "no tensor matches the backbone (wrong architecture?)", kind="checkpoint")
    model.load_state_dict(mapped, strict=False)
    return {"path": str(path), "loaded": len(mapped), "model_tensors": len(own),
            "skipped": sorted(set(own) - set(mapped))[:20]}  # fmt: skip


def pooled_width(backbone: nn.Module) -> int:
    """Width of the backbone's pooled output (`forward` with num_classes=0). timm's `num_features`
    is the width before any pre-logits layer (mobilenetv3's conv_head), `head_hidden_size` after it."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def build_model(backbone: str, *, head: str = "linear", head_kwargs: dict | None = None, pretrained: bool = False,
                initial_checkpoint: str | Path | None = None, num_classes: int = NUM_CLASSES,
                drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> FerNet:  # fmt: skip
    """`head_kwargs` go to the head's constructor (ArcFace: `s`); `drop_rate`: dropout before the head
    in training, `drop_path_rate`: stochastic depth (neither has weights of its own: a model spec leaves
    them out)."""
    if head not in HEADS:
        raise ConfigError(f"--head {head!r} unknown; expected one of {', '.join(HEADS)}")
    net = create_backbone(backbone, pretrained=pretrained, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    model = FerNet(net, HEADS[head](pooled_width(net), num_classes, **(head_kwargs or {})))
    if initial_checkpoint:
        load_initial_weights(model, initial_checkpoint)
    return model


def normalization_of(model: FerNet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(model.backbone, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
