"""A small from-scratch CNN, the shape of the Keras models in the seed projects.

Four conv blocks (conv-BN-ReLU x2, max-pool), global average pooling, dropout, linear.
Kept as the honest baseline that every transfer-learned model must beat.
"""

from __future__ import annotations

import torch
from torch import nn

from astroclassify.models.registry import PretrainedCfg, register_model

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 2, widths: tuple[int, ...] = (32, 64, 128, 256), drop: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width in widths:
            layers += [
                nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.num_features = c_in
        self.drop = nn.Dropout(drop)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(x.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        """d logits / d pooled features, (N, K, C): the Grad-CAM weights (see explanations/gradcam.py)."""
        return self.classifier.weight.expand(pooled.shape[0], -1, -1)


@register_model(PretrainedCfg(input_size=128, source="from scratch"))
def small_cnn(pretrained: bool = False, num_classes: int = 2, **kwargs) -> SmallCNN:
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights; it trains from scratch")
    return SmallCNN(num_classes=num_classes, **kwargs)
