"""Which vector ranks "more like this" best: the embedding, the calibrated probabilities, or both?

Look-alikes should be the same kind of galaxy: macro precision@10 of the same gz1 class among
each image's ten nearest neighbours, within a held-out split of the morphology model (issue 30
§4). Chosen on ``--split val``, reported on ``--split test``.

``--contrastive`` also trains projections of the embedding for similarity (supervised
contrastive loss, Khosla et al. 2020, on the gz1 classes of the model's *training* split, which
the held-out split never joins): a linear map and a small MLP, each to 64 unit-length
dimensions, and scores them the same way; and prints, for each vector, the precision@10 when
the held-out images search the training images instead (a user's picture against a stored
collection).

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/lookalike_features.py --split val [--contrastive]
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


def contrastive_projection(x: np.ndarray, y: np.ndarray, hidden: int = 0, dim: int = 64, seed: int = 0):
    """A projection trained with the supervised contrastive loss on (x, y); returns x -> projected."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6

    def prep(v: np.ndarray) -> torch.Tensor:
        z = (v - mu) / sd
        return torch.tensor(z / np.linalg.norm(z, axis=1, keepdims=True), dtype=torch.float32)

    classes = {c: i for i, c in enumerate(sorted(set(y)))}
    yi = np.array([classes[c] for c in y])
    layers = [torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, dim)] if hidden else []
    net = torch.nn.Sequential(*(layers or [torch.nn.Linear(x.shape[1], dim)]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    weights = 1.0 / np.bincount(yi)[yi]  # class-balanced batches: mergers are 2% of gz1
    weights /= weights.sum()
    X, Y = prep(x), torch.tensor(yi)
    for _ in range(20 * len(x) // 256):
        idx = torch.tensor(rng.choice(len(x), 256, p=weights))
        z = torch.nn.functional.normalize(net(torch.nn.functional.dropout(X[idx], 0.2)), dim=1)
        same = Y[idx][:, None] == Y[idx][None, :]
        eye = torch.eye(256, dtype=torch.bool)
        logits = (z @ z.T / 0.2).masked_fill(eye, -1e9)
        logp = logits - torch.logsumexp(logits, 1, keepdim=True)
        pos = same & ~eye
        loss = (-(logp * pos).sum(1) / pos.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return lambda v: torch.nn.functional.normalize(net(prep(v)), dim=1).detach().numpy()  # cosine, as trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="morphology")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--contrastive", action="store_true", help="also train projections for similarity")
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
    gallery: dict[str, np.ndarray] = {}
    if args.contrastive:
        train = [r for r in read_splits(clf.predictor.bundle.path / "splits.csv") if r.split == "train"]
        train = [r for r in train if r.key.startswith("gz1-sdss/")]
        train_out = list(clf.predictor.run([str(Path(data) / r.key) for r in train]))
        train_emb, train_y = np.stack([o.embedding for o in train_out]), np.array([r.label for r in train])
        gallery = {"embedding (today)": train_emb, "probabilities": np.stack([o.probabilities for o in train_out])}
        for hidden, name in ((0, "contrastive projection, linear"), (512, "contrastive projection, MLP 512")):
            project = contrastive_projection(train_emb, train_y, hidden=hidden)
            candidates[name], gallery[name] = project(emb), project(train_emb)
    for name, vectors in candidates.items():
        macro, per_class = precision_at_10(vectors, y)
        detail = ", ".join(f"{k} {v:.2f}" for k, v in per_class.items())
        against = ""
        if name in gallery:
            g = gallery[name].astype(np.float32)
            index = VectorIndex.build(g, exact=True)
            neighbours, _ = index.search(vectors.astype(np.float32), 10)
            hits = (train_y[neighbours] == y[:, None]).mean(1)
            against = f"; against the training images {np.mean([hits[y == c].mean() for c in sorted(set(y))]):.3f}"
        print(f"{args.split} n={len(y)} | {name:52} | macro P@10 {macro:.3f} ({detail}){against}")
    flag = " --contrastive" if args.contrastive else ""
    print(f"\nreproduce: python bench/lookalike_features.py --model {args.model} --split {args.split}{flag}")


if __name__ == "__main__":
    main()
