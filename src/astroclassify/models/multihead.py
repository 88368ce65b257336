"""One shared encoder, one linear classifier (and tagger) per head; and one head seen as a plain zoo model.

Zoobot's lesson (Walmsley et al. 2022; GZ Evo): one encoder answering many questions at once
transfers better than one trained for a single question. ``training.multitask`` trains it.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from astroclassify.models.registry import create_model

__all__ = ["HeadView", "MultiHeadNet", "encoder_id"]


class MultiHeadNet(nn.Module):
    """A zoo backbone's features, pooled, then one linear classifier (and tagger) per head."""

    def __init__(self, arch: str, pretrained: bool, heads: dict[str, tuple[int, int]], drop_rate: float = 0.2):
        super().__init__()
        self.arch = arch
        self.backbone = create_model(arch, pretrained=pretrained, num_classes=1)
        width = int(self.backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.classifiers = nn.ModuleDict({h: nn.Linear(width, k) for h, (k, _) in heads.items()})
        self.taggers = nn.ModuleDict({h: nn.Linear(width, t) for h, (_, t) in heads.items() if t})

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.classifiers.parameters(), *self.taggers.parameters()]

    def forward(self, x: torch.Tensor, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.dropout(self.backbone.forward_features(x).mean(dim=(2, 3)))
        tags = self.taggers[head](pooled) if head in self.taggers else None
        return self.classifiers[head](pooled), tags


class HeadView(nn.Module):
    """One head of a ``MultiHeadNet`` with the zoo model interface, for export and Grad-CAM."""

    def __init__(self, net: MultiHeadNet, head: str) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.classifiers[self.head](features.mean(dim=(2, 3)))

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.classifiers[self.head].weight.expand(pooled.shape[0], -1, -1)

    def has_tags(self) -> bool:
        return self.head in self.net.taggers

    def forward_tags(self, features: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (sigmoid): fractions and multi-label tags are not exclusive."""
        return torch.sigmoid(self.net.taggers[self.head](features.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def encoder_id(net: MultiHeadNet) -> str:
    """12 hex digits of SHA-256 over the shared encoder's weights: heads with one id share one encoder."""
    digest = hashlib.sha256()
    unused = {id(p) for p in getattr(net.backbone, "head_parameters", list)()}
    for name, tensor in sorted(net.backbone.state_dict(keep_vars=True).items()):
        if id(tensor) not in unused:
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float32).numpy().tobytes())
    return digest.hexdigest()[:12]
