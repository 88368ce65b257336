"""Float16-stored weights widened to float32, by walking the ONNX file's protobuf encoding.

Models ship their weights in float16 (half the package size); ONNX Runtime's CPU kernels are
fastest in float32, so the weights are widened once, before the session is made. The onnx
package would do it in a few lines, but importing it costs 0.58 s (0.55 s of it
``ml_dtypes``), two thirds of ``load``'s time, and it is not needed otherwise to predict
(bench/startup.py). The protobuf wire format is stable and small: a model is a sequence of
fields, the graph is field 7, its initializers field 5, and a tensor's type (2), raw bytes (9)
or packed halves (5) are all this needs; every other field is copied as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from astroclassify.errors import ModelError

__all__ = ["FP16_MARKER", "has_fp16_marker", "widen_fp16_initializers"]

FP16_MARKER = "astroclassify.fp16_weights"

# Field numbers in onnx.proto (ModelProto, GraphProto, TensorProto, StringStringEntryProto).
MODEL_GRAPH, MODEL_METADATA = 7, 14
GRAPH_INITIALIZER = 5
TENSOR_DATA_TYPE, TENSOR_INT32_DATA, TENSOR_RAW_DATA = 2, 5, 9
ENTRY_KEY = 1
FLOAT, FLOAT16 = 1, 10
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


def _varint(data: bytes | memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data):
            raise ModelError("the ONNX file ends inside a number: truncated or not ONNX")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any, bytes | memoryview]]:
    """(field number, wire type, value, the field's whole encoding) for each field of a message."""
    i = 0
    while i < len(data):
        start = i
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: int | bytes | memoryview
        if wire == VARINT:
            value, i = _varint(data, i)
        elif wire == LENGTH:
            size, i = _varint(data, i)
            if i + size > len(data):
                raise ModelError("the ONNX file ends inside a field: truncated or not ONNX")
            value, i = data[i : i + size], i + size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            value, i = data[i : i + width], i + width
        else:
            raise ModelError(f"unexpected protobuf wire type {wire}: not an ONNX file")
        yield number, wire, value, data[start:i]


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH) + _encode_varint(len(payload)) + payload


def has_fp16_marker(model: bytes) -> bool:
    """Whether the model says its float16 initializers stand for float32 weights (exported by us)."""
    for number, wire, value, _ in _fields(model):
        if number == MODEL_METADATA and wire == LENGTH:
            for n, w, v, _ in _fields(value):
                if n == ENTRY_KEY and w == LENGTH and bytes(v) == FP16_MARKER.encode():
                    return True
    return False


def _widen_tensor(tensor: memoryview) -> bytes:
    fields = list(_fields(tensor))
    data_type = next((v for n, w, v, _ in fields if n == TENSOR_DATA_TYPE and w == VARINT), None)
    if data_type != FLOAT16:
        return bytes(tensor)
    raw = next((bytes(v) for n, w, v, _ in fields if n == TENSOR_RAW_DATA and w == LENGTH), None)
    if raw is not None:
        halves = np.frombuffer(raw, dtype="<f2")
    else:  # halves as uint16 in int32_data, packed or one by one
        words: list[int] = []
        for n, w, v, _ in fields:
            if n == TENSOR_INT32_DATA and w == LENGTH:
                j = 0
                while j < len(v):
                    word, j = _varint(v, j)
                    words.append(word)
            elif n == TENSOR_INT32_DATA and w == VARINT:
                words.append(v)
        halves = np.array(words, dtype=np.uint16).view("<f2")
    kept = b"".join(
        bytes(enc) for n, _, _, enc in fields if n not in (TENSOR_DATA_TYPE, TENSOR_INT32_DATA, TENSOR_RAW_DATA)
    )
    widened = halves.astype("<f4").tobytes()
    return (
        kept
        + _encode_varint(TENSOR_DATA_TYPE << 3 | VARINT)
        + _encode_varint(FLOAT)
        + _length_field(TENSOR_RAW_DATA, widened)
    )


def widen_fp16_initializers(model: bytes) -> bytes:
    """``model`` with every float16 initializer of its graph stored as float32 instead (values unchanged)."""
    out = bytearray()
    for number, wire, value, encoding in _fields(model):
        if number != MODEL_GRAPH or wire != LENGTH:
            out += encoding
            continue
        graph = bytearray()
        for n, w, v, enc in _fields(value):
            graph += _length_field(n, _widen_tensor(v)) if n == GRAPH_INITIALIZER and w == LENGTH else enc
        out += _length_field(MODEL_GRAPH, bytes(graph))
    return bytes(out)
