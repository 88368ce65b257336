"""Image embeddings: the classifier head's input, as an output of the model's own ONNX graph.

Models exported by this version return ``embedding`` beside ``logits`` and ``cam``. A model
exported before has the same tensor inside its graph (the pooled feature map feeding the
final ``Gemm``); ``add_embedding_output`` exposes it without touching a weight, so its
logits, metrics and card stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.errors import ModelError

if TYPE_CHECKING:
    from astroclassify.inference.predictor import OnnxPredictor

__all__ = ["EMBEDDING_OUTPUT", "add_embedding_output", "embed_images", "has_embedding_output"]

EMBEDDING_OUTPUT = "embedding"


def has_embedding_output(onnx_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(o.name == EMBEDDING_OUTPUT for o in graph.output)


def add_embedding_output(onnx_path: Path) -> bool:
    """Expose the final linear layer's input as an ``embedding`` output; False if it was there.

    Raises
    ------
    ModelError
        If the logits do not come from a ``Gemm``/``MatMul`` on a pooled vector (re-train the
        model with this version to export its embedding).
    """
    import onnx
    from onnx import helper

    proto = onnx.load(str(onnx_path))
    graph = proto.graph
    if any(o.name == EMBEDDING_OUTPUT for o in graph.output):
        return False
    producer = {out: node for node in graph.node for out in node.output}
    head = producer.get(graph.output[0].name)
    if head is None or head.op_type not in ("Gemm", "MatMul"):
        raise ModelError(
            f"{onnx_path}: the logits do not come from a linear layer "
            f"({head.op_type if head else 'no node'}); re-train the model to export its embedding"
        )
    if EMBEDDING_OUTPUT not in producer:  # a node may survive where only the output was dropped
        graph.node.append(helper.make_node("Identity", [head.input[0]], [EMBEDDING_OUTPUT], name="embedding_output"))
    graph.output.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, ["batch", None]))
    onnx.checker.check_model(proto)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(onnx_path)
    return True


def embed_images(predictor: OnnxPredictor, paths: Sequence[Path], batch: int = 32) -> np.ndarray:
    """The model's embedding of each image, as ``predict`` decodes it (no test-time augmentation)."""
    from astroclassify.inference.chunks import in_chunks

    if not predictor.embedding_size:
        raise ModelError(f"model {predictor.bundle.name!r} has no embedding output; re-export it to clean labels")

    def infer(x: np.ndarray, items: list[Path]) -> list[np.ndarray]:
        emb = predictor.forward(x, "none")[1]
        assert emb is not None
        return list(emb)

    out = [c.result for c in in_chunks(paths, predictor.prepare, infer, size=batch, errors=()) if c.result is not None]
    return np.stack(out) if out else np.zeros((0, predictor.embedding_size), np.float32)
