"""ONNX export. Weights are stored as float16 (half the size) and upcast when loaded.

Models with a closed-form ``head_gradient`` get two more outputs: ``cam``, Grad-CAM maps
for every class (see ``training/gradcam.py``), so explanations need no torch; and
``embedding``, the head's input, for anomaly scores and similarity search. A head with
tags (``training/multitask.py``) also returns ``tags``: one probability per tag.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from astroclassify.inference.embedding import EMBEDDING_OUTPUT
from astroclassify.inference.fp16 import FP16_MARKER
from astroclassify.training.gradcam import CamExport, has_tags

__all__ = ["export_onnx"]

log = logging.getLogger(__name__)


def export_onnx(model: nn.Module, path: Path, image_size: int, *, fp16_weights: bool = True) -> Path:
    """Export logits (and Grad-CAM maps) for a dynamic batch of (N, 3, S, S) normalised images."""
    import onnx
    from onnx import numpy_helper

    model = model.eval().to(memory_format=torch.contiguous_format)
    outputs = ["logits"]
    if hasattr(model, "head_gradient"):
        outputs = ["logits", "cam", EMBEDDING_OUTPUT] + (["tags"] if has_tags(model) else [])
        model = CamExport(model).eval()
    dummy = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about constant folding
        # The TorchScript exporter writes one self-contained file and folds BatchNorm into
        # the convolutions; the dynamo exporter would split weights into a side file.
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_axes={"input": {0: "batch"}} | {name: {0: "batch"} for name in outputs},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    if fp16_weights:
        for init in proto.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and init.dims and int(np.prod(init.dims)) > 16:
                arr = numpy_helper.to_array(init).astype(np.float16)
                init.CopyFrom(numpy_helper.from_array(arr, init.name))
        entry = proto.metadata_props.add()
        entry.key, entry.value = FP16_MARKER, "1"
    onnx.save(proto, str(path))
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
