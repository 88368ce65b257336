"""Which vector ranks "more like this" best: the embedding, the calibrated probabilities, or both?

Look-alikes should be the same kind of galaxy: macro precision@10 of the same gz1 class among
each image's ten nearest neighbours, within a held-out split of the morphology model (issue 30
§4). Chosen on ``--split val``, reported on ``--split test``.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/lookalike_features.py --split val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import astroclassify
from astroclassify.discovery.similarity import VectorIndex
from astroclassify.preparation.collections import shared_data_dir
from astroclassify.preparation.splits import read_splits


def precision_at_10(vectors: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    index = VectorIndex.build(vectors.astype(np.float32), exact=True)
    neighbours, _ = index.search(vectors.astype(np.float32), 11)
    hits = np.array([(y[[j for j in row if j != i][:10]] == y[i]).mean() for i, row in enumerate(neighbours)])
    per_class = {lab: float(hits[y == lab].mean()) for lab in sorted(set(y))}
    return float(np.mean(list(per_class.values()))), per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="morphology")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    args = parser.parse_args()
    clf = astroclassify.load(args.model)
    data = shared_data_dir(None)
    assert data is not None, "set ASTROCLASSIFY_DATA_DIR"
    rows = [r for r in read_splits(clf.predictor.bundle.path / "splits.csv") if r.split == args.split]
    rows = [r for r in rows if r.key.startswith("gz1-sdss/")]
    paths = [Path(data) / r.key for r in rows]
    outcomes = list(clf.predictor.run([str(p) for p in paths]))
    y = np.array([r.label for r in rows])
    emb = np.stack([o.embedding for o in outcomes])
    probs = np.stack([o.probabilities for o in outcomes])
    z = (emb - emb.mean(0)) / (emb.std(0) + 1e-6)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logp = np.log(np.clip(probs, 1e-4, 1))
    candidates = {
        "embedding (today)": emb,
        "probabilities": probs,
        "sqrt probabilities (Hellinger)": np.sqrt(probs),
    }
    for w in (0.5, 1.0, 2.0, 4.0):
        candidates[f"embedding (standardised) + {w} x sqrt probabilities"] = np.hstack([z, w * np.sqrt(probs)])
    candidates["embedding + log-probabilities / 10"] = np.hstack([z, logp / 10])
    for name, vectors in candidates.items():
        macro, per_class = precision_at_10(vectors, y)
        detail = ", ".join(f"{k} {v:.2f}" for k, v in per_class.items())
        print(f"{args.split} n={len(y)} | {name:52} | macro P@10 {macro:.3f} ({detail})")
    print(f"\nreproduce: python bench/lookalike_features.py --model {args.model} --split {args.split}")


if __name__ == "__main__":
    main()
