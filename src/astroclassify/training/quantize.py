"""INT8 models for small machines: ONNX Runtime static quantization, calibrated on training images.

The FP32 graph (float16-stored weights widened) is pre-processed (shape inference, fusions)
and quantized to QDQ form: weights per channel as signed 8-bit, activations as unsigned
8-bit, their ranges taken from a seeded sample of the model's *training* images, so no
held-out image informs the quantized model. The result is a model folder like any other:
it loads by path or name, keeps the labels, temperatures and split, gets its own anomaly
detector (its embeddings differ slightly), and its card states what quantization cost and
bought, both measured here on the held-out test split and on bare sessions.

Needs no torch: ONNX and ONNX Runtime only.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.errors import ConfigError, DataError, ModelError
from astroclassify.evaluation.finish import finish, score_split
from astroclassify.imaging.transforms import to_tensor_layout
from astroclassify.inference.predictor import OnnxPredictor, _session_bytes
from astroclassify.modelfolder.folder import Bundle, load_bundle
from astroclassify.modelfolder.versions import draft, is_home
from astroclassify.preparation.collections import resolve_data
from astroclassify.preparation.dataset import load_dataset, sha256_file
from astroclassify.preparation.splits import read_splits
from astroclassify.progress import Progress

__all__ = ["QuantizeResult", "quantize_model"]

CALIBRATION_IMAGES = 200
COPIED = ("splits.csv", "history.json", "history.png", "cv.json")


@dataclass(frozen=True)
class QuantizeResult:
    """An INT8 model folder and what it cost: test-split scores and throughput, FP32 vs INT8."""

    path: Path
    fp32: dict  # accuracy, macro_f1 on the test split; images_per_second on a bare session
    int8: dict
    speedup: float

    def __repr__(self) -> str:
        return (
            f"QuantizeResult({self.path}: accuracy {self.fp32['accuracy']:.3f} -> {self.int8['accuracy']:.3f}, "
            f"macro-F1 {self.fp32['macro_f1']:.3f} -> {self.int8['macro_f1']:.3f}, {self.speedup:.2f}x faster)"
        )


def quantize_model(
    model: str | Path,
    out: str | Path,
    *,
    calibration_images: int = CALIBRATION_IMAGES,
    name: str | None = None,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Write an INT8 copy of ``model`` to ``out``, calibrated on its training images, and score it.

    Parameters
    ----------
    model : str or Path
        A model name or folder (any architecture of the zoo).
    out : str or Path
        The new model folder.
    calibration_images : int
        Training images whose activations set the quantization ranges (seeded sample).
    name : str, optional
        The new model's name (default: ``<name>-int8``).

    Returns
    -------
    QuantizeResult
        Test-split accuracy and macro-F1 and bare-session images/s, before and after.

    Raises
    ------
    ConfigError
        ``out`` is the model's own folder, or already holds a model.
    DataError
        The model's training images cannot be found (they calibrate).
    """
    source = load_bundle(model, models_dir=folders.models_dir)
    out = Path(out)
    if out.resolve() == source.path.resolve() or source.path.resolve().is_relative_to(out.resolve()):
        raise ConfigError("--out must be a new folder, not the model's own")
    if (out / "model.json").exists() or is_home(out):
        raise ConfigError(f"{out} already holds a model; choose an empty folder")
    samples = _training_samples(source, calibration_images, folders.data_dir)
    fp32_predictor = OnnxPredictor(source, detector=False)
    name = name or f"{source.name}-int8"
    info = {"derived_from": f"{source.name}@{source.version}", "data": {"calibration_images": len(samples)}}
    with (
        draft(out, made_by="quantize", info=info) as d,
        tempfile.TemporaryDirectory(prefix="astroclassify-int8-") as tmp,
    ):
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(_session_bytes(source.onnx_path))
        _quantize(fp32, d.path / "model.onnx", _calibration(fp32_predictor, samples, progress), Path(tmp))
        for file in COPIED:
            if (source.path / file).is_file():
                shutil.copyfile(source.path / file, d.path / file)
        meta = {k: v for k, v in source.meta.items() if k not in ("metrics", "quantization", "name", "version")}
        meta["name"] = name
        meta["quantization"] = {
            "from": f"{source.name} {source.version}",
            "method": "ONNX Runtime static quantization, QDQ, per-channel s8 weights, u8 activations, MinMax ranges",
            "calibration_images": len(samples),
            "calibration": "a seeded sample of the model's training images",
        }
        (d.path / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        int8 = load_bundle(d.path)
        sources = (source.meta.get("data") or {}).get("sources") or []
        after_test = score_split(OnnxPredictor(int8, detector=False), sources, data_dir=folders.data_dir)
        before = _summary(
            score_split(OnnxPredictor(source, detector=False), sources, data_dir=folders.data_dir)["all"].metrics
        )
        after = _summary(after_test["all"].metrics)
        before["images_per_second"] = _throughput(fp32_predictor)
        after["images_per_second"] = _throughput(OnnxPredictor(int8, detector=False))
        speedup = after["images_per_second"] / before["images_per_second"]
        int8.meta["quantization"] |= {"fp32": before, "int8": after, "speedup": round(speedup, 2)}
        # On disk before anything re-reads it: the detector fit renders the card from model.json.
        (d.path / "model.json").write_text(json.dumps(int8.meta, indent=2) + "\n")
        if (source.path / "detector" / "detector.json").is_file():
            _fit_detector(int8)
        finish(int8, after_test)
        d.info["scores"] = {k: after[k] for k in ("n", "accuracy", "macro_f1")}
    return QuantizeResult(d.published, before, after, speedup)


def _training_samples(bundle: Bundle, n: int, data_dir: Path | None) -> list[Path]:
    splits_file = bundle.path / "splits.csv"
    sources = (bundle.meta.get("data") or {}).get("sources") or []
    if not splits_file.is_file() or not sources:
        raise DataError(f"model {bundle.name!r} records no training split to calibrate on")
    train = {r.sha256 for r in read_splits(splits_file) if r.split == "train"}
    paths = [
        s.path
        for source in sources
        for s in load_dataset(resolve_data(source, data_dir=data_dir)).samples
        if sha256_file(s.path) in train
    ]
    if not paths:
        raise DataError(f"the training images of model {bundle.name!r} ({', '.join(sources)}) were not found")
    rng = np.random.default_rng(0)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def _calibration(predictor: OnnxPredictor, samples: list[Path], progress: Progress | None) -> Iterator[dict]:
    advance = progress("calibrating", len(samples)) if progress else (lambda n=1: None)
    b = predictor.bundle
    for path in samples:
        try:
            image = predictor.prepare(path)
        except DataError:
            continue
        advance(1)
        yield {predictor.input_name: to_tensor_layout(image[None], b.mean, b.std)}


def _quantize(fp32: Path, out: Path, batches: Iterator[dict], tmp: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict | None:
            return next(batches, None)

    prepared = tmp / "prepared.onnx"
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_cam_only_nodes(prepared),
        )
    except Exception as exc:  # ORT's quantizer raises assorted types for graphs it cannot handle
        raise ModelError(f"could not quantize {fp32.name}: {exc}") from None


def _cam_only_nodes(path: Path) -> list[str]:
    """Nodes only the Grad-CAM output needs: left in float.

    The closed-form CAM reuses head weights transposed (training/gradcam.py); quantized per
    channel along another axis, a shared weight breaks the quantizer (MobileNetV3's 1024 x 576
    hidden layer did), and the map is computed once per explanation, not per prediction.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}

    def needed(outputs: list[str]) -> set[str]:
        seen: set[str] = set()
        stack = [producer[o] for o in outputs if o in producer]
        while stack:
            node = stack.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            stack += [producer[i] for i in node.input if i in producer]
        return seen

    names = [o.name for o in graph.output]
    return sorted(needed([n for n in names if n == "cam"]) - needed([n for n in names if n != "cam"]))


def _summary(m: dict) -> dict:
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4), "n": m["n"]}


def _throughput(predictor: OnnxPredictor, n: int = 256, batch: int = 32) -> float:
    """Images/s of the bare session on pre-made tensors: the network alone, one view each."""
    size = predictor.bundle.image_size
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    run = predictor.session.run
    run(None, {predictor.input_name: x})  # warm-up
    t = time.perf_counter()
    for _ in range(n // batch):
        run(predictor._outputs, {predictor.input_name: x})
    return round(n / (time.perf_counter() - t), 1)


def _fit_detector(int8: Bundle) -> None:
    """The INT8 model's own detector (its embeddings differ slightly from the source's), fitted in the draft."""
    from astroclassify.discovery.fitting import fit_anomalies
    from astroclassify.errors import AstroClassifyError

    with contextlib.suppress(AstroClassifyError):  # the model still classifies; its card says it has none
        fit_anomalies(int8.path, out=int8.path / "detector")
