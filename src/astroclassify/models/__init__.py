"""Model registry and architectures (timm style); nothing here trains."""

from astroclassify.models import efficientnet_lite, mobilenet_v3, small_cnn, squeezenet  # noqa: F401  (register models)
from astroclassify.models.registry import (
    PretrainedCfg,
    create_model,
    get_pretrained_cfg,
    list_models,
    register_model,
)

__all__ = ["PretrainedCfg", "create_model", "get_pretrained_cfg", "list_models", "register_model"]
