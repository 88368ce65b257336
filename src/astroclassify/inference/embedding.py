"""Image embeddings: the classifier head's input, as an output of the model's own ONNX graph.

Models exported by this version return ``embedding`` beside ``logits`` and ``cam``. A model
exported before has the same tensor inside its graph (the pooled feature map feeding the
final ``Gemm``); ``add_embedding_output`` exposes it without touching a weight, so its
logits, metrics and card stay exactly as they were.
"""

from __future__ import annotations

from pathlib import Path

from astroclassify.errors import ModelError

__all__ = ["EMBEDDING_OUTPUT", "add_embedding_output", "has_embedding_output"]

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
