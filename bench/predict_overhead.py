"""`predict` end to end against a bare ONNX Runtime session on pre-decoded tensors.

The bare session gets the model's input already decoded, letterboxed and normalised, in
batches of 16, and returns logits and embeddings: the floor of what `predict` can cost.
`predict` (OnnxPredictor.run, what `astroclassify predict` and `Classifier.predict` call)
starts from the files: decoding, letterbox, normalisation, calibration and anomaly scores
included; its ORT threads sleep between runs instead of spinning, leaving a core to decoding. "sequential" is the same work with decoding and inference taking turns (the code
before issue 13); `run` decodes the next batch on a second thread while ORT runs this one.
Methods alternate over repeats, so a noisy neighbour hits them alike.

    python bench/predict_overhead.py --model dso --n 400 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from astroclassify.imaging.transforms import to_tensor_layout
    from astroclassify.inference.predictor import OnnxPredictor

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dso")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/hubble-dso"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: all cores)")
    args = ap.parse_args()
    files = sorted(Path(args.data).rglob("*.jpg"))[: args.n]
    p = OnnxPredictor(args.model, threads=args.threads)
    b = p.bundle
    pixels = np.stack([p.prepare(f) for f in files])
    tensors = to_tensor_layout(pixels, b.mean, b.std)

    # The bare session has ORT's default options (its threads spin between runs: fastest alone).
    import onnxruntime as ort

    from astroclassify.inference.predictor import _session_bytes

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    plain = ort.InferenceSession(_session_bytes(b.onnx_path), opts, providers=["CPUExecutionProvider"])

    def bare() -> None:
        for start in range(0, len(tensors), 16):
            plain.run(p._outputs, {p.input_name: tensors[start : start + 16]})

    def sequential() -> None:
        for start in range(0, len(files), 16):
            chunk = p._prepare_chunk(files[start : start + 16])
            p.outcomes(np.stack([a for _, a, _ in chunk]), "none")

    def predict() -> None:
        for _ in p.run(files, batch_size=16, tta="none"):
            pass

    best = {"bare": 1e9, "sequential": 1e9, "predict": 1e9}
    for fn in (bare, sequential, predict):
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("sequential", sequential), ("predict", predict)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {k: len(files) / v for k, v in best.items()}
    print(f"model {b.name}, {len(files)} images, batch 16, TTA none, ORT threads {args.threads or 'all'}")
    for k in best:
        print(f"  {k:<10} {rate[k]:7.1f} images/s  ({rate[k] / rate['bare']:.2f} of the bare session)")
    print(f"reproduce: python bench/predict_overhead.py --model {args.model} --n {args.n} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
