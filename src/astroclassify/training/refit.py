"""A fast challenger: the champion's encoder kept, its last layer refitted on what it was taught since.

Every model exports its embedding, the input of its final linear layer. A multinomial logistic
regression on the embeddings of the champion's training images and the new labels is a new
last layer; written into a copy of the champion's ONNX graph (the ``Gemm`` that makes
``logits``; Grad-CAM reads the same weights), it is a model like any other: calibrated on the
validation split, scored on the test split, carded, versioned. No torch and no pass through the
encoder's weights, so a verdict takes about a minute on 2 cores where a fine-tune takes tens
(``bench/learn_loop.py``). What it cannot do is learn a feature the encoder lacks: the full
fine-tune stays the challenger when the budget allows it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.config import Folders
from astroclassify.errors import DataError, ModelError
from astroclassify.progress import Progress, silent

__all__ = ["HeadRefit", "refit_head"]


@dataclass(frozen=True)
class HeadRefit:
    """The challenger written by ``refit_head``: its version folder and what it cost."""

    path: Path
    seconds: float
    trained_on: int  # images whose embeddings fitted the head


def refit_head(
    champion: Path,
    home: Path,
    train_rows: Sequence[tuple[Path, str]],
    *,
    sources: Sequence[str],
    splits: Path,
    bundled: Path | None = None,
    data_dir: Path | None = None,
    regularisation: float = 1.0,
    progress: Progress = silent,
) -> HeadRefit:
    """A new version of ``home`` (not served): the champion with its last layer refitted.

    Parameters
    ----------
    champion : Path
        The champion's version folder; its graph, detector and recipe are kept.
    home : Path
        The model home the challenger is written to (unserved, like a trained challenger).
    train_rows : sequence of (path, label)
        Every image the head learns from: the champion's training split and the new labels.
    sources : sequence of str
        The datasets whose validation and test rows calibrate and score the challenger.
    splits : Path
        The challenger's ``splits.csv`` (gold images in test, the new labels in train).
    regularisation : float
        Inverse L2 strength of the logistic regression (scikit-learn's ``C``).

    Raises
    ------
    ModelError
        The graph has no plain final ``Gemm`` over its embedding, or a class has no image.
    """
    import shutil

    from sklearn.linear_model import LogisticRegression

    from astroclassify.evaluation.evaluate import evaluate
    from astroclassify.evaluation.finish import finish, fit_temperatures, score_split
    from astroclassify.inference.embedding import embed_images
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.modelfolder.folder import load_bundle
    from astroclassify.modelfolder.versions import draft

    started = time.perf_counter()
    predictor = OnnxPredictor(champion, detector=False)
    labels = list(predictor.labels)
    rows = [(p, lab) for p, lab in train_rows if lab in labels]
    y = np.array([labels.index(lab) for _, lab in rows])
    missing = [lab for i, lab in enumerate(labels) if not (y == i).any()]
    if missing:
        raise ModelError(f"no training image of {', '.join(missing)} here; the head cannot be refitted")
    advance = progress("embedding training images", len(rows))
    x = embed_images(predictor, [p for p, _ in rows])
    del predictor  # scoring below opens sessions of its own
    advance(len(rows))
    # Balanced, as the network's own training drew each class equally often.
    head = LogisticRegression(C=regularisation, class_weight="balanced", max_iter=3000).fit(x, y)
    weight, bias = head.coef_.astype(np.float32), head.intercept_.astype(np.float32)
    if weight.shape[0] != len(labels):  # scikit-learn returns one row for two classes
        weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2], np.float32)
    with draft(home, made_by="learn-head", bundled=bundled, serve=False, info={"kind": "head"}) as d:
        for item in champion.iterdir():
            if item.name in ("VERSION.json", "checkpoint.pt", "history.json", "history.png"):  # not this fit's
                continue
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, d.path / item.name)
        _replace_head(d.path / "model.onnx", weight, bias)
        shutil.copyfile(splits, d.path / "splits.csv")
        bundle = load_bundle(d.path)
        training = dict(bundle.meta.get("training", {}))
        training["command"] = f"astroclassify learn {home.name} --kind head"
        training["head_refit"] = {
            "images": len(rows),
            "regularisation": regularisation,
            "from": champion.name,
            "rule": "multinomial logistic regression on the champion's embeddings, classes balanced",
        }
        bundle = dataclasses.replace(bundle, meta=bundle.meta | {"training": training})
        folders = Folders(data_dir=data_dir)
        val: dict[str, np.ndarray] = {}
        y_val = np.zeros(0, int)
        for mode in dict.fromkeys(("none", bundle.tta)):
            ev = evaluate(d.path, list(sources), split="val", tta=mode, folders=folders)
            if ev.logits is None or not len(ev.y_true):
                raise ModelError("no validation images to calibrate the refitted head on")
            val[mode] = ev.logits
            y_val = np.array([labels.index(t) for t in ev.y_true])
        bundle = fit_temperatures(bundle, val, y_val)
        bundle.save()
        test = score_split(bundle, list(sources), data_dir=data_dir, progress=progress)
        for source in sources if len(sources) > 1 else ():
            try:
                test[str(source)] = score_split(bundle, [source], data_dir=data_dir)["all"]
            except DataError:  # a source with no test rows: the new labels only train
                continue
        finish(bundle, test)
    assert d.version is not None
    return HeadRefit(home / "versions" / d.version, time.perf_counter() - started, len(rows))


def _replace_head(onnx_path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """Write ``weight`` (C, D) and ``bias`` (C,) into the ``Gemm`` that turns the embedding into logits."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    gemm = next((n for n in graph.node if "logits" in n.output), None)
    inits = {i.name: i for i in graph.initializer}
    if gemm is None or gemm.op_type != "Gemm" or len(gemm.input) < 3 or not all(n in inits for n in gemm.input[1:3]):
        raise ModelError(
            f"{onnx_path}: its logits do not come from one linear layer; only a full fine-tune can retrain it"
        )
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    w_old, b_old = inits[gemm.input[1]], inits[gemm.input[2]]
    w = weight if attrs.get("transB", 0) else weight.T
    if tuple(w_old.dims) != w.shape or tuple(b_old.dims) != bias.shape:
        raise ModelError(f"{onnx_path}: head of shape {tuple(w_old.dims)}, refitted {w.shape}; not the same classes")
    for old, new in ((w_old, w), (b_old, bias)):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(old.data_type)  # float16 weights stay float16
        old.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new, dtype=dtype), old.name))
    onnx.save(model, str(onnx_path))
