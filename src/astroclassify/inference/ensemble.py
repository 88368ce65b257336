"""Ensembles: several trained models merged into one ONNX graph that averages their
calibrated probabilities.

The merged graph takes the same input as its members and returns ``logits`` =
log(mean_i softmax(z_i / T_i)), so ``softmax(logits)`` is the averaged calibrated
probability and the ensemble is a model folder like any other: ``predict``, ``evaluate``,
``explain`` and ``serve`` load it unchanged. Its ``cam`` output is the Grad-CAM of the mean
tempered logit, sum_i cam_i / (T_i n), when every member's maps have the same shape.

Members must agree on what they see and how they were split: the same classes, input
size, crop and normalisation (one preprocessing for all), and the same ``splits.csv``, so
the ensemble's test split is unseen by every member.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from astroclassify.errors import ConfigError
from astroclassify.imaging.tta import resolve_tta
from astroclassify.inference.embedding import EMBEDDING_OUTPUT
from astroclassify.inference.fp16 import FP16_MARKER
from astroclassify.modelfolder.folder import Bundle, load_bundle

__all__ = ["merge_models"]

_SAME = ("labels", "image_size", "mean", "std")


def _check_members(members: list[Bundle]) -> None:
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two models")
    first = members[0]
    for b in members[1:]:
        for attr in _SAME:
            if getattr(b, attr) != getattr(first, attr):
                raise ConfigError(
                    f"{b.name} and {first.name} differ in {attr} ({getattr(b, attr)} vs {getattr(first, attr)}); "
                    "ensemble members must share classes and preprocessing"
                )
        if b.meta.get("crop", 1.0) != first.meta.get("crop", 1.0):
            raise ConfigError(f"{b.name} and {first.name} crop their inputs differently")
        if (b.meta.get("taxonomy") or {}).get("mirror") != (first.meta.get("taxonomy") or {}).get("mirror"):
            raise ConfigError(f"{b.name} and {first.name} have different mirror maps")
    digests = {_digest(b.path / "splits.csv") for b in members}
    if len(digests) != 1 or None in digests:
        raise ConfigError(
            "ensemble members must be trained on the same splits.csv (train with --set splits=FIRST/splits.csv); "
            "otherwise one member's training images could be in another's test split"
        )


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _merge(members: list[Bundle], tta: str):
    import onnx
    from onnx import compose, helper, numpy_helper

    nodes: list = []
    inits: list = []
    logit_names: list[str] = []
    cam_names: list[tuple[str, str]] = []
    cam_shapes: set[tuple] = set()
    embedding_names: list[str] = []
    fp16, ir_version = True, 0
    for i, b in enumerate(members):
        proto = onnx.load(str(b.onnx_path))
        ir_version = max(ir_version, proto.ir_version)
        fp16 &= any(p.key == FP16_MARKER for p in proto.metadata_props)
        outputs = [o.name for o in proto.graph.output]
        proto = compose.add_prefix(proto, f"m{i}_")
        for node in proto.graph.node:
            node.input[:] = ["input" if x == f"m{i}_input" else x for x in node.input]
        nodes += proto.graph.node
        inits += proto.graph.initializer
        t = numpy_helper.from_array(np.array(b.temperature_for(tta), dtype=np.float32), f"m{i}_temperature")
        inits.append(t)
        nodes += [
            helper.make_node("Div", [f"m{i}_logits", t.name], [f"m{i}_scaled"]),
            helper.make_node("Softmax", [f"m{i}_scaled"], [f"m{i}_probs"], axis=1),
        ]
        logit_names.append(f"m{i}_probs")
        if "cam" in outputs:
            cam_names.append((f"m{i}_cam", t.name))
            cam_shapes.add(_cam_shape(b))
        if EMBEDDING_OUTPUT in outputs:
            embedding_names.append(f"m{i}_{EMBEDDING_OUTPUT}")
    n = np.array(len(members), dtype=np.float32)
    inits.append(numpy_helper.from_array(n, "n_members"))
    nodes += [
        helper.make_node("Sum", logit_names, ["sum_probs"]),
        helper.make_node("Div", ["sum_probs", "n_members"], ["mean_probs"]),
        helper.make_node("Log", ["mean_probs"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", len(members[0].labels)])]
    if len(cam_names) == len(members) and len(cam_shapes) == 1:
        scaled = []
        for cam, temperature in cam_names:
            nodes.append(helper.make_node("Div", [cam, temperature], [f"{cam}_scaled"]))
            scaled.append(f"{cam}_scaled")
        nodes += [
            helper.make_node("Sum", scaled, ["sum_cam"]),
            helper.make_node("Div", ["sum_cam", "n_members"], ["cam"]),
        ]
        k = len(members[0].labels)
        outputs.append(helper.make_tensor_value_info("cam", onnx.TensorProto.FLOAT, ["batch", k, "h", "w"]))
    if len(embedding_names) == len(members):  # the members' embeddings side by side
        nodes.append(helper.make_node("Concat", embedding_names, [EMBEDDING_OUTPUT], axis=1))
        outputs.append(helper.make_tensor_value_info(EMBEDDING_OUTPUT, onnx.TensorProto.FLOAT, ["batch", None]))
    size = members[0].image_size
    graph = helper.make_graph(
        nodes,
        "ensemble",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    if fp16:
        entry = model.metadata_props.add()
        entry.key, entry.value = FP16_MARKER, "1"
    onnx.checker.check_model(model)
    return model


def _cam_shape(bundle: Bundle) -> tuple:
    from astroclassify.inference.predictor import OnnxPredictor

    predictor = OnnxPredictor(bundle)
    x = np.zeros((1, 3, bundle.image_size, bundle.image_size), np.float32)
    return tuple(predictor.session.run(["cam"], {predictor.input_name: x})[0].shape)


def merge_models(
    models: list[str | Path],
    out: Path,
    name: str | None = None,
    tta: str | None = None,
    *,
    models_dir: Path | None = None,
) -> Bundle:
    """Write the merged graph and its ``model.json`` into ``out`` (a draft version); returns its bundle, not yet scored.

    ``evaluation.ensemble.build_ensemble`` calibrates it, scores it and finishes it (``modelfolder.finish``).
    """
    import onnx

    members = [load_bundle(m, models_dir=models_dir) for m in models]
    _check_members(members)
    first = members[0]
    mode = resolve_tta(tta, first.tta)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(_merge(members, mode), str(out / "model.onnx"))
    shutil.copyfile(first.path / "splits.csv", out / "splits.csv")
    meta = {
        "crop": first.meta.get("crop", 1.0),
        "taxonomy": first.meta.get("taxonomy"),
        "explainable": all(m.meta.get("explainable") for m in members),
        "ensemble": {
            "members": [
                {
                    "name": m.name,
                    "version": m.version,
                    "arch": m.arch,
                    "path": str(m.path),
                    "temperature": m.temperature_for(mode),
                }
                for m in members
            ],
            "rule": "mean of calibrated probabilities",
        },
        "training": {
            "command": "",
            "config": {"data": first.meta.get("training", {}).get("config", {}).get("data", [])},
        },
        "data": first.meta.get("data", {}),
    }
    bundle = Bundle(
        path=out,
        name=name or out.name,
        version="draft",
        arch="ensemble(" + ", ".join(m.arch for m in members) + ")",
        labels=first.labels,
        image_size=first.image_size,
        mean=first.mean,
        std=first.std,
        temperature=1.0,  # members are calibrated inside the graph
        tta=mode,
        meta=meta,
    )
    bundle.save()
    (out / "members.json").write_text(json.dumps(meta["ensemble"], indent=2) + "\n")
    return bundle
