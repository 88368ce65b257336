"""MobileNetV3 (Howard et al. 2019), Large and Small, written here because torchvision and
timm cannot be imported next to the CPU torch on these machines.

The layer table follows the paper (Tables 1 and 2) and matches torchvision's layout, so
parameter counts equal the published ones (a test checks 5,483,032 and 2,542,856 at 1000
classes). There is no PyPI package with MobileNetV3 ImageNet weights for PyTorch, and
nothing may be downloaded at run time, so these models train from scratch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from astroclassify.errors import ModelError
from astroclassify.models.registry import PretrainedCfg, register_model

__all__ = ["MobileNetV3"]

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]
SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]


def _divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 without dropping more than 10% (the paper's rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None):
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, eps=0.001, momentum=0.01),
    ]
    if act:
        layers.append(nn.Hardswish() if act == "HS" else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, se: bool, act: str, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(_conv_bn(c_in, expanded, 1, act=act))
        layers.append(_conv_bn(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(_conv_bn(expanded, c_out, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    def __init__(self, config: list[tuple], last_channel: int, num_classes: int = 1000, drop_rate: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 16, 3, 2, act="HS")]
        c_in = 16
        for kernel, expanded, c_out, se, act, stride in config:
            layers.append(InvertedResidual(c_in, kernel, expanded, c_out, se, act, stride))
            c_in = c_out
        layers.append(_conv_bn(c_in, 6 * c_in, 1, act="HS"))
        self.features = nn.Sequential(*layers)
        self.num_features = 6 * c_in
        self.hidden = nn.Linear(self.num_features, last_channel)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(last_channel, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(F.hardswish(self.hidden(x.mean(dim=(2, 3))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.hidden.parameters(), *self.classifier.parameters()]

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        """d logits / d pooled features, (N, K, C), in closed form (see explanations/gradcam.py).

        Through Linear → hardswish → Linear: W2 · diag(hardswish'(W1 p + b1)) · W1, where
        hardswish'(z) is 0 below -3, 1 above 3 and (2z + 3) / 6 between.
        """
        z = self.hidden(pooled)
        slope = torch.where(z < -3, torch.zeros_like(z), torch.where(z > 3, torch.ones_like(z), (2 * z + 3) / 6))
        return (self.classifier.weight.unsqueeze(0) * slope.unsqueeze(1)) @ self.hidden.weight


def _no_weights(name: str) -> None:
    raise ModelError(
        f"{name} has no ImageNet weights here: no PyPI package ships them and nothing is downloaded at run time; "
        "train it from scratch (pretrained=False, or --set pretrained=false)"
    )


@register_model(PretrainedCfg(input_size=224, source="from scratch (no packaged ImageNet weights)"))
def mobilenet_v3_large(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> MobileNetV3:
    if pretrained:
        _no_weights("mobilenet_v3_large")
    return MobileNetV3(LARGE, 1280, num_classes=num_classes, **kwargs)


@register_model(PretrainedCfg(input_size=224, source="from scratch (no packaged ImageNet weights)"))
def mobilenet_v3_small(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> MobileNetV3:
    if pretrained:
        _no_weights("mobilenet_v3_small")
    return MobileNetV3(SMALL, 1024, num_classes=num_classes, **kwargs)
