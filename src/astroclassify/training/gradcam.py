"""Grad-CAM at the last feature map, in a form that exports to ONNX.

Every zoo model ends in global average pooling followed by a head, so the gradient of a
logit with respect to the feature map is the same at every position:
``d y_k / d A[c, i, j] = g[k, c] / (h * w)`` with ``g = d y / d pooled``. Grad-CAM's
channel weights are therefore ``g / (h * w)`` and need no backward pass, as long as the
model gives ``g`` in closed form (``head_gradient``; for a linear head it is the weight
matrix). That lets the exported graph return the maps as a second output, so serving
explains an image with ONNX Runtime alone. ``gradcam`` below is the textbook autograd
version; the model tests check that the exported maps equal it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CamExport", "cam_maps", "gradcam", "has_tags"]


def cam_maps(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Signed Grad-CAM maps for every class, (N, K, h, w), before the ReLU."""
    n, c, h, w = features.shape
    weights = model.head_gradient(features.mean(dim=(2, 3))) / (h * w)  # (N, K, C)
    return torch.bmm(weights, features.reshape(n, c, h * w)).reshape(n, -1, h, w)


def gradcam(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference Grad-CAM by autograd: (N, K, h, w) signed maps for every class."""
    model.eval()
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    maps = []
    for k in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, k].sum(), features, retain_graph=True)
        alpha = grad.mean(dim=(2, 3), keepdim=True)
        maps.append((alpha * features).sum(dim=1))
    return torch.stack(maps, dim=1).detach()


class CamExport(nn.Module):
    """Wraps a model so that its ONNX graph returns ``(logits, cam, embedding[, tags])``.

    The embedding is the pooled last feature map, the head's input (what anomaly detectors
    and similarity search use; see ``discovery/``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.forward_features(x)
        pooled = features.mean(dim=(2, 3))
        out = (self.model.forward_head(features), cam_maps(self.model, features), pooled)
        if has_tags(self.model):  # a head with soft or multi-label outputs (training/multitask.py)
            return (*out, self.model.forward_tags(features))
        return out


def has_tags(model: nn.Module) -> bool:
    return bool(getattr(model, "has_tags", lambda: False)())
