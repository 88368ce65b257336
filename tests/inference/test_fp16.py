"""Float16 weights widened without the onnx package give exactly what onnx's own widening gives."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from astroclassify.errors import ModelError
from astroclassify.inference.fp16 import FP16_MARKER, has_fp16_marker, widen_fp16_initializers
from astroclassify.modelfolder.folder import load_bundle


def _with_onnx(model: bytes) -> bytes:
    """The reference: onnx's helpers, as the predictor did before."""
    proto = onnx.load_from_string(model)
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    return proto.SerializeToString()


def _outputs(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


@pytest.mark.parametrize("name", ["dso", "galaxy-type", "morphology"])
def test_bundled_models_answer_bit_for_bit_as_with_onnx(name):
    b = load_bundle(name)
    raw = b.onnx_path.read_bytes()
    assert has_fp16_marker(raw)
    mine, reference = widen_fp16_initializers(raw), _with_onnx(raw)
    assert len(mine) == len(reference)
    x = np.random.default_rng(0).random((2, 3, b.image_size, b.image_size), dtype=np.float32)
    for a, c in zip(_outputs(mine, x), _outputs(reference, x), strict=True):
        np.testing.assert_array_equal(a, c)


def test_halves_in_int32_data_and_other_fields_survive():
    """onnx may keep float16 values in int32_data rather than raw bytes; names, dims and metadata stay."""
    weights = np.array([[1.5, -2.25], [0.0009765625, 65504.0]], dtype=np.float16)
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT16, dims=weights.shape)
    tensor.int32_data.extend(weights.view(np.uint16).ravel().tolist())  # the bit patterns, as the spec keeps them
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = FP16_MARKER, "1"
    raw = model.SerializeToString()
    widened = onnx.load_from_string(widen_fp16_initializers(raw))
    (init,) = widened.graph.initializer
    assert init.name == "w" and init.data_type == TensorProto.FLOAT and list(init.dims) == [2, 2]
    np.testing.assert_array_equal(numpy_helper.to_array(init), weights.astype(np.float32))
    assert [(p.key, p.value) for p in widened.metadata_props] == [(FP16_MARKER, "1")]
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(_outputs(widen_fp16_initializers(raw), x)[0], x @ weights.astype(np.float32))
    assert not has_fp16_marker(helper.make_model(graph).SerializeToString())


def test_a_truncated_file_is_a_model_error():
    raw = load_bundle("dso").onnx_path.read_bytes()
    with pytest.raises(ModelError, match="truncated or not ONNX"):
        widen_fp16_initializers(raw[: len(raw) // 2])
