"""SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 revision from the authors' repository),
written here because torchvision cannot be imported next to the CPU torch.

Its classifier is a 1x1 convolution and ReLU *before* global average pooling, so the
"features" handed to the head are the per-class score maps themselves: Grad-CAM at that
layer is the class activation map, exactly. The layout matches torchvision's, so the
parameter count equals the published 1,235,496 at 1000 classes. No packaged ImageNet
weights exist here; it trains from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from astroclassify.models.mobilenet_v3 import _no_weights
from astroclassify.models.registry import PretrainedCfg, register_model

__all__ = ["SqueezeNet"]


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand1, 1)
        self.expand3 = nn.Conv2d(squeeze, expand3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.act(self.squeeze(x))
        return torch.cat([self.act(self.expand1(s)), self.act(self.expand3(s))], dim=1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Conv2d(512, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier:
                    nn.init.normal_(m.weight, 0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class score maps (N, K, h, w), after the classifier's ReLU."""
        return torch.relu(self.classifier(self.drop(self.features(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Conv2d(512, num_classes, 1)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.classifier.parameters())

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head is the pooling itself: d logits / d pooled = identity, (N, K, K)."""
        eye = torch.eye(pooled.shape[1], dtype=pooled.dtype, device=pooled.device)
        return eye.expand(pooled.shape[0], -1, -1)


@register_model(PretrainedCfg(input_size=224, source="from scratch (no packaged ImageNet weights)"))
def squeezenet1_1(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> SqueezeNet:
    if pretrained:
        _no_weights("squeezenet1_1")
    return SqueezeNet(num_classes=num_classes, **kwargs)
