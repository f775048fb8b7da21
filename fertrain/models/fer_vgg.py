"""`fer_vgg`: a VGG-style network for small grey faces, registered with timm so that
`--backbone fer_vgg` (and `timm.create_model("fer_vgg")`) builds it like any timm model.

Four stages of two 3x3 convolutions (BatchNorm, ReLU) and a 2x2 max-pool, 64/128/256/512 wide
(4.7 M parameters), then global average pooling: the shape of the VGG nets that reach 72-73 %
on FER2013 from scratch at 48 px (Khaireddin & Chen 2021), with the pooled head fertrain puts on
every backbone instead of their 4096-wide fully connected layers, so any input size from 32 px
works. No pretrained weights exist for it.
"""

from __future__ import annotations

from timm.models import register_model
from torch import nn

from fertrain.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FerVGG(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), convs_per_stage: int = 2, num_classes: int = 0,
                 in_chans: int = 3, drop_rate: float = 0.0):  # fmt: skip
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
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(channels, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}  # the normalization fertrain reads
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.drop(self.pool(self.features(x)).flatten(1)))


@register_model
def fer_vgg(pretrained: bool = False, **kwargs) -> FerVGG:
    if pretrained:
        raise ConfigError("--backbone fer_vgg has no pretrained weights; train it from scratch")
    return FerVGG(**{k: v for k, v in kwargs.items() if k in ("num_classes", "in_chans", "drop_rate")})
