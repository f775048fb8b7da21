"""Backbones for FER2013's own 48-px faces, registered with timm so that `--backbone NAME` (and
`timm.create_model(NAME)`) builds them like any timm model. No pretrained weights exist for them.

`fer_vgg`: four stages of two 3x3 convolutions (BatchNorm, ReLU) and a 2x2 max-pool, 64/128/256/512 wide
(4.7 M parameters), then global average pooling: the shape of the VGG nets that reach 72-73 %
on FER2013 from scratch at 48 px (Khaireddin & Chen 2021), with the pooled head fertrain puts on
every backbone instead of their 4096-wide fully connected layers, so any input size from 32 px
works. Without pretrained weights they carry no `pretrained_cfg`: inputs are normalized with
ImageNet's mean and std, as for every timm model trained from scratch here (`normalization_of`).
`fer_vgg_s` is the same net at half the width (1.2 M parameters), a student for it; `fer_vgg_w` at twice
the width (128-1,024 channels, 18.8 M parameters, 4x the compute), the capacity the published VGGs have.
`fer_vgg_fc` keeps where each feature is on the face: the last 3x3 map (a 48-px face after four
pools) flattened into two fully connected ReLU layers of 1,024 (10.5 M parameters), as the
published nets do with wider layers; `--drop P` then drops before each of its three linear layers.

`fer_resnet18`: timm's resnet18 with the stem of the CIFAR-style ResNets that published FER2013
results use at 48 px: one 3x3 stride-1 convolution and no max-pool, so a 48-px face keeps 48x48
feature maps in the first stage instead of 12x12 (timm's 7x7 stride-2 stem and max-pool are made
for 224-px photos). Same 11.2 M parameters as resnet18; about 3x its compute at 112 px.
`fer_resnet34`: the same stem in front of resnet34's blocks (3/4/6/3 per stage, 21.3 M parameters, about
twice fer_resnet18's compute), the depth the published FER2013 ResNets go to.
"""

from __future__ import annotations

from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from fertrain.errors import ConfigError


class FerVGG(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), convs_per_stage: int = 2, num_classes: int = 0,
                 in_chans: int = 3, drop_rate: float = 0.0, fc: tuple[int, ...] = ()):  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]  # fmt: skip
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.modules_per_stage = 3 * convs_per_stage + 1
        # no fc: global average pooling; fc: a 3x3 grid (any input size), flattened into ReLU layers
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(3 if fc else 1), nn.Flatten())
        hidden: list[nn.Module] = []
        features = channels * 9 if fc else channels
        for width in fc:
            hidden += [nn.Dropout(drop_rate), nn.Linear(features, width), nn.ReLU(inplace=True)]
            features = width
        self.hidden = nn.Sequential(*hidden)
        self.num_features = features
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(features, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def group_matcher(self, coarse: bool = False):
        """timm's layer grouping (progressive unfreezing uses it): one group per stage, then the classifier."""

        def stage_of(name: str) -> float:
            if name.startswith("features."):
                return int(name.split(".")[1]) // self.modules_per_stage
            return float("inf")

        return stage_of

    def forward(self, x):
        return self.classifier(self.drop(self.hidden(self.pool(self.features(x)))))


@register_model
def fer_vgg(pretrained: bool = False, **kwargs) -> FerVGG:
    _refuse_pretrained("fer_vgg", pretrained)
    return FerVGG(**_known(kwargs))


@register_model
def fer_vgg_s(pretrained: bool = False, **kwargs) -> FerVGG:
    """fer_vgg at half the width (32-256 channels): 1.2 M parameters, a quarter of fer_vgg's, for students."""
    _refuse_pretrained("fer_vgg_s", pretrained)
    return FerVGG(widths=(32, 64, 128, 256), **_known(kwargs))


@register_model
def fer_vgg_w(pretrained: bool = False, **kwargs) -> FerVGG:
    """fer_vgg at twice the width (128-1,024 channels): 18.8 M parameters, 4x fer_vgg's, and 4x its compute."""
    _refuse_pretrained("fer_vgg_w", pretrained)
    return FerVGG(widths=(128, 256, 512, 1024), **_known(kwargs))


@register_model
def fer_vgg_fc(pretrained: bool = False, **kwargs) -> FerVGG:
    """fer_vgg with its last 3x3 map flattened into two fully connected layers of 1,024 (10.5 M parameters)."""
    _refuse_pretrained("fer_vgg_fc", pretrained)
    return FerVGG(fc=(1024, 1024), **_known(kwargs))


@register_model
def fer_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    _refuse_pretrained("fer_resnet18", pretrained)
    return _lowres_resnet([2, 2, 2, 2], **_known(kwargs))


@register_model
def fer_resnet34(pretrained: bool = False, **kwargs) -> ResNet:
    _refuse_pretrained("fer_resnet34", pretrained)
    return _lowres_resnet([3, 4, 6, 3], **_known(kwargs))


def _lowres_resnet(blocks_per_stage: list[int], **kwargs) -> ResNet:
    """timm's ResNet of BasicBlocks with a 3x3 stride-1 stem and no max-pool (48-px faces keep 48x48 maps)."""
    model = ResNet(BasicBlock, blocks_per_stage, **kwargs)
    model.conv1 = nn.Conv2d(kwargs.get("in_chans", 3), model.bn1.num_features, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _refuse_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ConfigError(f"--backbone {name} has no pretrained weights; train it from scratch")


def _known(kwargs: dict) -> dict:
    """The timm.create_model arguments these nets may take (timm passes more, e.g. pretrained_cfg).
    drop_path_rate passes through so that FerVGG, which has no residual blocks, refuses it by name."""
    return {k: v for k, v in kwargs.items() if k in ("num_classes", "in_chans", "drop_rate", "drop_path_rate")}
