"""Anomaly detection, active learning and scoring cost on the shared datasets.

Each figure is printed with the CLI command that reproduces it. Detectors never see the
images they are scored on (``evaluate``/``simulate`` leave out what ``fit`` used).

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/anomalies.py            # all (about 6 min)
    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/anomalies.py --only planets

1. planets: a galaxy/nebula model trained on hubble-dso alone (trained here, 1-2 min),
   its own detector (its training images; validation images calibrate). Headline: NASA
   planets vs NASA galaxies (one archive). Controls: NASA galaxies vs unseen Hubble images
   (does the detector just tell archives apart?) and planets vs unseen Hubble images.
2. rings: the bundled morphology model, a detector fitted on 60% of the DECaLS non-rings;
   rings vs the other non-rings, then 30 simulated marks in 3 rounds; ``ceiling``: how
   well a supervised model on the same embeddings does with every label, or 30.
3. mergers: the bundled morphology model and its own detector; gz1-sdss mergers (1.7%)
   in the test split, 60 simulated marks in 3 rounds.
4. cost: milliseconds per image that anomaly scoring adds to a batch prediction, and
   seconds to re-rank a collection from marks.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = Path("runs")


def cli(*args: str) -> dict | None:
    """Run an astroclassify command (printed first); parse its JSON output if any."""
    print("$ astroclassify " + shlex.join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", "astroclassify.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    out = result.stdout.strip()
    return json.loads(out) if out.startswith("{") else None


def show(name: str, m: dict) -> None:
    lo, hi = m["auroc_ci"]
    detectors = ", ".join(f"{k} {v['auroc']:.3f}" for k, v in m["detectors"].items())
    print(
        f"  {name}: n_in={m['n_in']} n_out={m['n_out']} AUROC {m['auroc']:.3f} [{lo:.3f}, {hi:.3f}] "
        f"FPR@95%TPR {m['fpr_at_95_tpr']:.3f} P@20 {m['precision_at_k'].get('20', float('nan')):.2f} "
        f"unusual in/out {m['unusual_rate']['in']:.1%}/{m['unusual_rate']['out']:.1%}\n    per detector: {detectors}"
    )


def planets() -> None:
    model = RUNS / "hubble-gn"
    if not (model / "model.json").is_file():
        cli(
            "train", "--data", "hubble-dso", "--out", str(model), "--name", "hubble-gn", "--epochs", "10",
            "--set", "freeze_epochs=10", "--set", "lr=3e-3", "--set", "tta=rot4", "--fresh", "--quiet",
        )  # fmt: skip
    if not (model / "detector" / "detector.json").is_file():
        cli("anomalies", "fit", "--model", str(model))
    base = ("anomalies", "evaluate", "--model", str(model), "--json")
    show(
        "planets vs galaxies (NASA)",
        cli(*base, "--in", "nasa-planets-galaxies:galaxy", "--out", "nasa-planets-galaxies:planet"),
    )  # type: ignore[arg-type]
    show(
        "control: NASA galaxies vs unseen Hubble",
        cli(*base, "--in", "hubble-dso", "--out", "nasa-planets-galaxies:galaxy"),
    )  # type: ignore[arg-type]
    show("planets vs unseen Hubble", cli(*base, "--in", "hubble-dso", "--out", "nasa-planets-galaxies:planet"))  # type: ignore[arg-type]


def rings() -> None:
    detector = RUNS / "detectors" / "decals-not-ring"
    if not (detector / "detector.json").is_file():
        cli(
            "anomalies", "fit", "--model", "morphology", "--data", "gz-decals-rings:not_ring",
            "--fraction", "0.6", "--held-out", "0.3", "--out", str(detector),
        )  # fmt: skip
    common = ("--model", "morphology", "--detector", str(detector), "--json")
    show(
        "rings vs non-rings (DECaLS)",
        cli("anomalies", "evaluate", *common, "--in", "gz-decals-rings:not_ring", "--out", "gz-decals-rings:ring"),
    )  # type: ignore[arg-type]
    sim = cli(
        "anomalies",
        "simulate",
        *common,
        "--pool",
        "gz-decals-rings",
        "--target",
        "ring",
        "--marks",
        "30",
        "--rounds",
        "3",
    )
    print(f"  simulated marks: {json.dumps(sim)}")


def ceiling() -> None:
    """How well could any ranker do on rings? Logistic regression with all labels, and with 30."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astroclassify.discovery.fitting import embed_samples, select_images
    from astroclassify.inference.predictor import OnnxPredictor

    samples = select_images("gz-decals-rings")
    embedded = embed_samples(OnnxPredictor("morphology", detector=False), samples, None, "")
    x = embedded.embeddings
    y = np.array([s.label == "ring" for s in embedded.samples])
    for c in (0.01, 0.1, 1.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        p = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
        print(f"  rings, all labels, 5-fold CV, C={c}: AUROC {roc_auc_score(y, p[:, 1]):.3f}")
    scores = []
    for seed in range(10):
        order = np.random.default_rng(seed).permutation(len(y))
        train, test = order[:30], order[30:]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x[train], y[train])
        scores.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    print(f"  rings, 30 random labels (10 draws): AUROC {np.mean(scores):.3f} ± {np.std(scores):.3f}")


def mergers() -> None:
    sim = cli(
        "anomalies", "simulate", "--model", "morphology", "--pool", "gz1-sdss", "--target", "merger",
        "--marks", "60", "--rounds", "3", "--json",
    )  # fmt: skip
    print(f"  simulated marks: {json.dumps(sim)}")


def cost() -> None:
    import numpy as np

    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.preparation.collections import resolve_data
    from astroclassify.preparation.dataset import load_dataset

    for name in ("dso", "morphology"):
        plain = OnnxPredictor(name, detector=False)
        scored = OnnxPredictor(name)
        samples = load_dataset(resolve_data("hubble-dso")).samples[:64]
        batch = np.stack([plain.prepare(s.path) for s in samples])
        logits, embeddings = plain.forward(batch)
        t = time.perf_counter()
        for _ in range(20):
            scored.anomalies(logits, embeddings)
        per_image = (time.perf_counter() - t) / 20 / len(batch) * 1000
        t = time.perf_counter()
        for i in range(len(batch)):
            scored.anomalies(logits[i : i + 1], embeddings[i : i + 1])
        single = (time.perf_counter() - t) / len(batch) * 1000
        print(
            f"  {name}: anomaly scoring adds {per_image:.3f} ms per image in a batch of 64, {single:.3f} ms for one image"
        )
    from astroclassify.discovery.ranking import rerank

    rng = np.random.default_rng(0)
    rerank(rng.normal(size=(100, 65)), rng.random(100), {0: True, 1: False})  # imports scikit-learn once
    for n in (5_000, 20_000):
        compact = rng.normal(size=(n, 65)).astype(np.float32)
        base = rng.random(n)
        marks = {int(i): bool(i % 3 == 0) for i in rng.choice(n, 60, replace=False)}
        t = time.perf_counter()
        rerank(compact, base, marks)
        print(f"  re-ranking {n:,} images from 60 marks: {time.perf_counter() - t:.2f} s")


TASKS = {"planets": planets, "rings": rings, "ceiling": ceiling, "mergers": mergers, "cost": cost}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=list(TASKS), action="append")
    args = parser.parse_args()
    tempfile.tempdir = None
    for name in args.only or TASKS:
        print(f"== {name}", flush=True)
        TASKS[name]()
    print(
        "command: ASTROCLASSIFY_DATA_DIR=../shared/data python bench/anomalies.py"
        + "".join(f" --only {o}" for o in args.only or [])
    )


if __name__ == "__main__":
    main()
