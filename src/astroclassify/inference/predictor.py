"""ONNX Runtime predictor: decode → letterbox → normalise → logits → calibrated probabilities.

The session is built once per predictor (the web app and batch jobs keep one per process);
per image, only decoding and resizing remain.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import ImageDecodeError, ModelError, UnknownNameError
from astroclassify.imaging.decode import decode_pil
from astroclassify.imaging.filters import check_filters, letterbox_filtered
from astroclassify.imaging.framing import Frame, Framing, framed
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.imaging.transforms import to_tensor_layout
from astroclassify.imaging.tta import TTA_MODES, merge_views, resolve_tta, tta_views, undo_tta_view
from astroclassify.inference.detectors import AnomalyScores, Detector
from astroclassify.inference.embedding import EMBEDDING_OUTPUT
from astroclassify.inference.fp16 import has_fp16_marker, widen_fp16_initializers
from astroclassify.inference.probabilities import softmax
from astroclassify.modelfolder.folder import Bundle, load_bundle
from astroclassify.preparation.taxonomy import Taxonomy

__all__ = ["TTA_MODES", "Explanation", "OnnxPredictor", "Outcome", "merge_views", "tta_views"]  # TTA re-exported

TAGS_OUTPUT = "tags"  # a head's soft and multi-label outputs, named in model.json's `tags`

log = logging.getLogger(__name__)

MAX_RUN_BATCH = 32


def _session_bytes(path: Path) -> bytes:
    """Model bytes for ORT, with float16-stored weights upcast to float32 (``fp16.py``: without the onnx package)."""
    model = path.read_bytes()
    return widen_fp16_initializers(model) if has_fp16_marker(model) else model


@dataclass(frozen=True)
class Outcome:
    """Result for one input of a batch run: probabilities, or the error that stopped it."""

    source: str
    probabilities: np.ndarray | None
    error: str | None = None
    logits: np.ndarray | None = None  # before temperature scaling
    embedding: np.ndarray | None = None  # compact embedding (with a detector: see discovery/detectors.py)
    anomaly_score: float | None = None  # in [0, 1]: the share of typical images less unusual
    unusual: bool | None = None  # anomaly_score over the detector's threshold
    tags: dict[str, float] | None = None  # soft and multi-label outputs: tag -> probability or fraction


@dataclass(frozen=True)
class Explanation:
    """Grad-CAM for one image: the explained class and a heat map in the model's input frame."""

    label: str
    probabilities: np.ndarray
    heatmap: np.ndarray  # (h, w) in [0, 1], over the letterboxed (S, S) input
    image: Image.Image  # the whole decoded picture, for drawing the overlay
    image_size: int = 0  # the model's input size S (the heat map is laid over a letterbox of it)
    frame: Frame | None = None  # the part of ``image`` the model saw (its crop or object framing)

    def __repr__(self) -> str:  # not the whole heat map and image
        h, w = self.heatmap.shape[:2]
        return f"Explanation(label={self.label!r}, p={float(self.probabilities.max()):.3f}, heatmap {h}x{w}, image {self.image.size[0]}x{self.image.size[1]})"

    def overlay(self, image_size: int | None = None, **kwargs) -> Image.Image:
        """The heat map blended over the image, at the image's size (at most 512 px a side).

        A model that crops or frames its pictures gets the heat inside the box it saw, outlined,
        and the rest of the picture dimmed.
        """
        from astroclassify.inference.overlay import render_overlay

        box = self.frame.box if self.frame is not None else None
        return render_overlay(self.image, self.heatmap, image_size or self.image_size, box=box, **kwargs)

    @property
    def seen(self) -> str:
        """What the model saw, in words: the whole picture, a central crop, or the framed object."""
        note = self.frame.note if self.frame is not None else ""
        if self.frame is None or self.frame.box == (0, 0, *self.image.size):
            return "the whole picture" + (f" ({note})" if note else "")
        return note or "the main object, framed"

    def _repr_html_(self) -> str:
        """In a notebook: the overlay itself, with the class and its probability."""
        import base64
        import html
        import io

        buf = io.BytesIO()
        self.overlay().convert("RGB").save(buf, format="JPEG", quality=85)
        src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        caption = html.escape(f"Grad-CAM for {self.label} (p={float(self.probabilities.max()):.3f})")
        return f'<figure style="margin:0"><img src="{src}" alt="{caption}" style="max-width:512px"><figcaption>{caption}</figcaption></figure>'


class OnnxPredictor:
    def __init__(
        self,
        bundle: Bundle | str | Path,
        *,
        threads: int = 0,
        limits: DecodeLimits = DEFAULT_LIMITS,
        models_dir: Path | None = None,
        detector: Detector | str | Path | Literal[False] | None = None,
    ) -> None:
        """Load ``bundle`` (a ``Bundle``, a model folder or a model name) into an ONNX Runtime session.

        ``threads`` is ONNX Runtime's intra-op thread count (0: all cores); ``limits`` what
        one image may cost to decode; ``models_dir`` is where names are looked up
        besides the bundled models. ``detector`` scores how unusual each image is (a
        ``Detector`` or its folder); default: the model's own ``detector/``, if it has one;
        ``False``: none.
        """
        import onnxruntime as ort

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, models_dir=models_dir)
        self.limits = limits
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle ORT threads sleep instead of spinning: they left no core for decoding the next
        # batch (predict: 104 -> 120 images/s with 2 threads; bench/predict_overhead.py).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                _session_bytes(self.bundle.onnx_path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnx / ORT raise assorted types for a corrupt file
            raise ModelError(f"{self.bundle.onnx_path}: cannot load ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.has_cam = "cam" in {o.name for o in self.session.get_outputs()}
        self.crop = float(self.bundle.meta.get("crop", 1.0))
        # How JPEGs were draft-decoded for this model's training: "square" before 0.3.
        self.draft_shape = str((self.bundle.meta.get("decode") or {}).get("draft", "square"))
        # The FITS stretch and the filters the model was trained with (imaging/stretch.py, filters.py).
        try:
            self.fits_display = FitsDisplay.from_dict(self.bundle.meta.get("fits"))
            self.filters = check_filters(self.bundle.meta.get("filters") or ())
            self.framing = Framing.from_dict(self.bundle.meta.get("framing"))
        except (ValueError, TypeError) as exc:  # a model.json edited by hand, or from a newer release
            raise ModelError(f"{self.bundle.path}/model.json: {exc}") from None
        stored = self.bundle.meta.get("taxonomy")
        taxonomy = Taxonomy.from_dict(stored, f"{self.bundle.path}/model.json") if stored else None
        self.mirror = np.array(taxonomy.mirror_index(list(self.labels))) if taxonomy and taxonomy.mirror else None
        outputs = {o.name: o for o in self.session.get_outputs()}
        self._outputs = [self.session.get_outputs()[0].name]
        self.embedding_size = 0  # 0: the model has no embedding output (exported before 0.3)
        if EMBEDDING_OUTPUT in outputs:
            self._outputs.append(EMBEDDING_OUTPUT)
            self.embedding_size = int(outputs[EMBEDDING_OUTPUT].shape[-1])
        # Tags (vote fractions, multi-label): a head trained on soft labels (training/multitask.py).
        self.tag_names: tuple[str, ...] = ()
        if TAGS_OUTPUT in outputs:
            self.tag_names = tuple(self.bundle.meta.get("tags") or ())
            if len(self.tag_names) != int(outputs[TAGS_OUTPUT].shape[-1]):
                raise ModelError(f"{self.bundle.path}/model.json: `tags` does not name the graph's tag outputs")
            self._outputs.append(TAGS_OUTPUT)
        self.detector = self._detector(detector)

    def _detector(self, detector: Detector | str | Path | Literal[False] | None) -> Detector | None:
        own = self.bundle.path / "detector"
        if detector is False or (detector is None and not (own / "detector.json").is_file()):
            return None
        try:
            loaded = detector if isinstance(detector, Detector) else Detector.load(Path(detector or own))
            if not self.embedding_size:
                raise ModelError(
                    f"model {self.bundle.name!r} has no embedding output for its anomaly detector; "
                    f"run `astroclassify anomalies fit --model {self.bundle.path}`"
                )
            if loaded.projection.mean.shape[0] != self.embedding_size:
                raise ModelError(
                    f"the anomaly detector was fitted on {loaded.projection.mean.shape[0]}-number embeddings; "
                    f"model {self.bundle.name!r} makes {self.embedding_size}"
                )
        except ModelError as exc:
            if detector is not None:  # asked for by name: say so
                raise
            # The model's own detector cannot be used: classify without anomaly scores, and say why once.
            log.warning("%s; classifying without anomaly scores", exc)
            return None
        return loaded

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    def prepare(self, source: str | Path | bytes | np.ndarray, *, limits: DecodeLimits | None = None) -> np.ndarray:
        """Decode (if needed) and letterbox one input to (S, S, 3) uint8.

        ``limits`` lowers the decoding limits for this input (a web upload) below the predictor's.
        """
        size = self.bundle.image_size
        if isinstance(source, np.ndarray):
            arr = source
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=-1)
            if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
                raise ImageDecodeError(f"array of shape {arr.shape} is not an (H, W, 3) image")
            if arr.dtype != np.uint8:
                arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            if self.crop < 1.0 or self.framing.method != "none":
                image, _ = framed(Image.fromarray(np.ascontiguousarray(arr[..., :3])), self.framing, self.crop)
                return letterbox_filtered(image, size, self.filters)
            return letterbox_filtered(arr[..., :3], size, self.filters)
        return letterbox_filtered(self._decode(source, size, limits)[0], size, self.filters)

    def _decode(
        self, source: str | Path | bytes, draft_size: int, limits: DecodeLimits | None = None
    ) -> tuple[Image.Image, Image.Image, Frame]:
        """What the model sees at about ``draft_size``, the whole decoded picture, and the box it saw there."""
        draft = math.ceil(draft_size / self.crop) * (1 if self.framing.method == "none" else 2)
        img = decode_pil(
            source,
            limits=self.limits.within(limits),
            draft_size=draft,
            draft_shape=self.draft_shape,
            fits_display=self.fits_display,
        )
        seen, frame = framed(img, self.framing, self.crop)
        return seen, img, frame

    def logits(self, batch: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Mean logits over the TTA views of a (N, S, S, 3) uint8 batch."""
        return self.forward(batch, tta)[0]

    def forward(self, batch: np.ndarray, tta: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean logits over the TTA views, and the embeddings of the images as they are."""
        logits, embeddings, _ = self.forward_all(batch, tta)
        return logits, embeddings

    def forward_all(
        self, batch: np.ndarray, tta: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Mean logits over the TTA views, the embeddings of the images as they are, and mean tag probabilities.

        The embedding comes from the unturned view in every TTA mode, so one anomaly detector
        serves a model whichever mode a request uses (None: no ``embedding`` output).

        Runs at most ``MAX_RUN_BATCH`` images per ORT call: activation memory grows with the
        batch and ORT's arena keeps its peak (364 images at once took 7 GB). The embedding
        costs nothing extra: it is a tensor the logits are computed from.
        """
        mode = resolve_tta(tta, self.bundle.tta)
        views = tta_views(batch, mode)
        v, n = views.shape[:2]
        flat = views.reshape(v * n, *views.shape[2:])
        if not len(flat):
            empty = np.zeros((0, self.embedding_size), dtype=np.float32) if self.embedding_size else None
            no_tags = np.zeros((0, len(self.tag_names)), dtype=np.float32) if self.tag_names else None
            return np.zeros((0, len(self.labels)), dtype=np.float32), empty, no_tags
        runs = [
            self.session.run(
                self._outputs,
                {self.input_name: to_tensor_layout(flat[i : i + MAX_RUN_BATCH], self.bundle.mean, self.bundle.std)},
            )
            for i in range(0, len(flat), MAX_RUN_BATCH)
        ]
        logits = merge_views(np.concatenate([r[0] for r in runs]).reshape(v, n, -1), self.mirror)
        tags = None
        if self.tag_names:  # tags do not change under rotation or mirror: the views' mean
            tags = np.concatenate([r[-1] for r in runs]).reshape(v, n, -1).mean(axis=0)
        if not self.embedding_size:
            return logits, None, tags
        embeddings = np.concatenate([r[1] for r in runs]).reshape(v, n, -1)[0]
        return logits, embeddings, tags

    def outcomes(self, batch: np.ndarray, tta: str | None = None, names: Sequence[str] | None = None) -> list[Outcome]:
        """Everything known about each image of a prepared (N, S, S, 3) batch: probabilities, logits, anomaly."""
        logits, embeddings, tags = self.forward_all(batch, tta)
        probabilities = softmax(logits, self.bundle.temperature_for(tta))
        compact, scores = self.anomalies(logits, embeddings)
        out = []
        for i in range(len(batch)):
            extra: dict = {}
            if tags is not None:
                extra["tags"] = {name: float(tags[i, j]) for j, name in enumerate(self.tag_names)}
            if compact is not None and scores is not None:
                extra |= {
                    "embedding": compact[i],
                    "anomaly_score": float(scores.anomaly_score[i]),
                    "unusual": bool(scores.unusual[i]),
                }
            out.append(Outcome(names[i] if names else "<array>", probabilities[i], logits=logits[i], **extra))
        return out

    def anomalies(
        self, logits: np.ndarray, embeddings: np.ndarray | None
    ) -> tuple[np.ndarray | None, AnomalyScores | None]:
        """Compact embeddings and anomaly scores for a batch (None, None without a detector)."""
        if self.detector is None or embeddings is None or not len(embeddings):
            return None, None
        compact = self.detector.projection.compact(embeddings)
        return compact, self.detector.score(compact, logits)

    def explain(self, source: str | Path | bytes, label: str | None = None, tta: str | None = None) -> Explanation:
        """Grad-CAM for ``label`` (default: the predicted class), averaged over the TTA views.

        Each view's map is turned back into the original orientation before averaging, so
        the explanation belongs to the same prediction the classifier reports.
        """
        if not self.has_cam:
            raise ModelError(
                f"model {self.bundle.name!r} was exported without Grad-CAM maps; "
                "re-train it with this version of astroclassify to get explanations"
            )
        if label is not None and label not in self.labels:
            raise UnknownNameError(
                f"unknown label {label!r} for model {self.bundle.name!r}; labels: {', '.join(self.labels)}"
            )
        size = self.bundle.image_size
        # The network sees exactly what predict feeds it (the same draft decode), so the
        # explanation's probabilities are the prediction's; the overlay is drawn on a larger decode.
        pixels = self.prepare(source)
        _, image, frame = self._decode(source, max(size, 512))
        views = tta_views(pixels[None], resolve_tta(tta, self.bundle.tta))[:, 0]
        logits, cams = self.session.run(
            ["logits", "cam"], {self.input_name: to_tensor_layout(views, self.bundle.mean, self.bundle.std)}
        )
        probabilities = softmax(merge_views(logits[:, None], self.mirror), self.bundle.temperature_for(tta))[0]
        k = int(probabilities.argmax()) if label is None else self.labels.index(label)
        # In a mirrored view, class k's evidence shows up as its mirror class.
        mirrored_k = k if self.mirror is None else int(self.mirror[k])
        heat = np.mean([undo_tta_view(cams[v, k if v < 4 else mirrored_k], v) for v in range(len(views))], axis=0)
        heat = np.maximum(heat, 0)
        peak = float(heat.max())
        return Explanation(self.labels[k], probabilities, heat / peak if peak > 0 else heat, image, size, frame)

    def explanation_key(self, label: str, tta: str | None = None) -> str:
        """A short key naming one rendered explanation: model, version, class and views."""
        import hashlib

        b = self.bundle
        mode = resolve_tta(tta, b.tta)
        return hashlib.sha256(f"{b.name}\0{b.version}\0{label}\0{mode}".encode()).hexdigest()[:16]

    def predict_proba(self, batch: np.ndarray, tta: str | None = None) -> np.ndarray:
        return softmax(self.logits(batch, tta), self.bundle.temperature_for(tta))

    def run(
        self, sources: Iterable[str | Path | bytes | np.ndarray], *, batch_size: int = 16, tta: str | None = None
    ) -> Iterator[Outcome]:
        """Predict many inputs in input order; a bad input yields an Outcome with ``error``.

        The next ``batch_size`` inputs are decoded on a second thread while ONNX Runtime runs
        the current ones (Pillow and ORT both release the GIL), so decoding no longer waits
        for inference or inference for decoding (bench/predict_throughput.py).
        """
        from astroclassify.inference.chunks import in_chunks

        def name_of(src: str | Path | bytes | np.ndarray) -> str:
            return "<array>" if isinstance(src, np.ndarray) else "<bytes>" if isinstance(src, bytes) else str(src)

        def infer(batch: np.ndarray, items: list) -> list[Outcome]:
            return self.outcomes(batch, tta, [name_of(i) for i in items])

        for c in in_chunks(sources, self.prepare, infer, size=batch_size, errors=(ImageDecodeError,), ahead=True):
            if c.error is not None:
                name = name_of(c.item)
                yield Outcome(name, None, str(c.error).removeprefix(f"{name}: "))
            else:
                assert c.result is not None
                yield c.result
