"""Images/s of `predict` on ONNX Runtime vs the same model in torch eager, batch 1.

Both paths decode the JPEG, letterbox and normalise each image (the same code), then run
the network on one image at a time; only the runtime differs. Both use all cores.

    python bench/predict_throughput.py --model dso --data ../shared/data/hubble-dso --n 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dso")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/hubble-dso"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tta", default="", help="also time ONNX Runtime with this TTA mode (e.g. rot4flip)")
    args = ap.parse_args()

    import torch

    from astroclassify.imaging.transforms import to_tensor_layout
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.models import create_model

    pred = OnnxPredictor(args.model)
    b = pred.bundle
    files = sorted(p for p in Path(args.data).rglob("*.jpg"))[: args.n]
    if not files:
        sys.exit(f"no .jpg files under {args.data}")

    # The torch model with the bundle's own weights, from the training checkpoint (not shipped
    # in the package; without it the same architecture runs with random weights, which
    # takes the same time).
    ckpt = b.path / "checkpoint.pt"
    model = create_model(b.arch, num_classes=len(b.labels))
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["best"]["state"] or state["model"])
    model = model.eval()
    model_cl = create_model(b.arch, num_classes=len(b.labels))
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.eval().to(memory_format=torch.channels_last)

    def run_onnx(path: Path) -> np.ndarray:
        return pred.predict_proba(pred.prepare(path)[None], tta="none")

    @torch.inference_mode()
    def run_torch(path: Path) -> np.ndarray:
        x = torch.from_numpy(to_tensor_layout(pred.prepare(path)[None], b.mean, b.std))
        return torch.softmax(model(x) / b.temperature, 1).numpy()

    @torch.inference_mode()
    def run_torch_cl(path: Path) -> np.ndarray:
        x = torch.from_numpy(to_tensor_layout(pred.prepare(path)[None], b.mean, b.std))
        return torch.softmax(model_cl(x.contiguous(memory_format=torch.channels_last)) / b.temperature, 1).numpy()

    runs = (
        ("decode+resize only", pred.prepare),
        ("onnxruntime", run_onnx),
        ("torch eager", run_torch),
        ("torch eager, channels_last", run_torch_cl),
    )
    if args.tta:
        runs += ((f"onnxruntime, tta {args.tta}", lambda p: pred.predict_proba(pred.prepare(p)[None], tta=args.tta)),)
    # Interleaved in blocks: methods take turns on blocks of 25 images, so machine noise (a
    # shared VM) hits all alike, while each method keeps its caches warm within a block
    # (alternating per image thrashes oneDNN's caches and slows torch 2x).
    for f in files[:5]:
        for _, fn in runs:
            fn(f)  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.repeats):
        for start in range(0, len(files), 25):
            for name, fn in runs:
                for f in files[start : start + 25]:
                    t0 = time.perf_counter()
                    fn(f)
                    times[name].append(time.perf_counter() - t0)
    results = {}
    for name, ts in times.items():
        med = float(np.median(ts))
        results[name] = 1.0 / med
        print(
            f"{name:>27}: {results[name]:7.1f} images/s  (median {1000 * med:.1f} ms/image, p90 {1000 * np.percentile(ts, 90):.1f} ms)"
        )
    print(
        f"speed-up onnxruntime / torch eager: {results['onnxruntime'] / results['torch eager']:.2f}x, "
        f"/ torch eager channels_last: {results['onnxruntime'] / results['torch eager, channels_last']:.2f}x "
        f"(model {b.name} {b.version}, {b.arch} @ {b.image_size}px, {len(files)} JPEGs from {args.data}, torch threads {torch.get_num_threads()})"
    )
    print("reproduce: python bench/predict_throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
