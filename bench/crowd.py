"""Vote aggregation on a simulated crowd over hubble-dso: ours against Dawid-Skene, GLAD and majority.

The true labels are hubble-dso's (371 ESA/Hubble images, galaxy or nebula). A crowd labels
them as installations would share labels:

- ``local``: 3 people on this installation, 85% right, each labelling 40% of the images;
- peer ``honest``: 10 contributors, 80% right, 30% each;
- peer ``noisy``: 10 contributors, 55% right, 30% each;
- peer ``hostile`` (with ``--hostile``): 50 sock puppets and 25 relayed "third origins", all
  wrong on the same half of the images, right on the rest (so they agree with each other and,
  on the easy half, with everyone: what fools a worker-confusion model).

10% of the images are the gold set (labels known; they weigh contributors and are not scored).
Accuracy of each aggregator's consensus on the other 90%, mean over seeds, with a 95% bootstrap
interval over images (of the pooled seeds):

- ``ours``: ``sharing.votes.weigh_votes`` (skill on gold, each remote source's unchecked
  contributors pooled as one installation);
- ``skill, no pooling``: the same without pooling (what shipped before issue 28);
- ``majority``, ``dawid-skene``, ``glad``: crowd-kit 1.4 over contributors (``pip install crowd-kit``);
- ``dawid-skene by source``: crowd-kit's Dawid-Skene with each source's majority as one worker.

    python bench/crowd.py --seeds 5            # honest and noisy peers
    python bench/crowd.py --seeds 5 --hostile  # and a hostile one
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from astroclassify.sharing.votes import LOCAL, PRIOR_WEIGHT, Vote, contributor_weights, weigh_votes

DATA = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def truth() -> dict[str, str]:
    with (DATA / "hubble-dso" / "manifest.csv").open(newline="") as fh:
        return {r["file"]: r["label"] for r in csv.DictReader(fh)}


def crowd(labels: dict[str, str], rng: np.random.Generator, hostile: bool) -> list[Vote]:
    images = sorted(labels)
    classes = sorted(set(labels.values()))

    def wrong(image: str) -> str:
        return next(c for c in classes if c != labels[image])

    votes: list[Vote] = []

    def people(source: str, n: int, accuracy: float, share: float) -> None:
        for p in range(n):
            for image in images:
                if rng.random() < share:
                    answer = labels[image] if rng.random() < accuracy else wrong(image)
                    votes.append(Vote(image, f"{source}/p{p}", answer, LOCAL if source == "local" else source))

    people("local", 3, 0.85, 0.4)
    people("http://honest", 10, 0.80, 0.3)
    people("http://noisy", 10, 0.55, 0.3)
    if hostile:
        targets = {i for i in images if rng.random() < 0.5}
        for p in range(75):
            who = f"evil/sock{p}" if p < 50 else f"third{p}/x"
            for image in images:
                if rng.random() < 0.6:
                    votes.append(
                        Vote(image, who, wrong(image) if image in targets else labels[image], "http://hostile")
                    )
    order = rng.permutation(len(votes))
    return [votes[i] for i in order]


def ours(votes, gold, classes):
    weighted = weigh_votes(votes, gold)
    return {image: max(sorted(w), key=lambda a: w[a]) for image, w in weighted.items()}


def skill_no_pooling(votes, gold, classes):
    latest = {(v.image, v.contributor): v.answer for v in votes}
    weights = contributor_weights(latest, gold)  # Laplace accuracy on gold, every contributor alone
    score: dict[str, Counter] = defaultdict(Counter)
    for (image, who), answer in latest.items():
        score[image][answer] += weights.get(who, PRIOR_WEIGHT)
    return {image: max(sorted(s), key=lambda a: s[a]) for image, s in score.items()}


def _frame(votes):
    import pandas as pd

    latest = {(v.image, v.contributor): v.answer for v in votes}
    return pd.DataFrame([{"task": i, "worker": w, "label": a} for (i, w), a in latest.items()])


def crowdkit(name):
    def run(votes, gold, classes):
        from crowdkit.aggregation import GLAD, DawidSkene, MajorityVote

        model = {"majority": MajorityVote(), "dawid-skene": DawidSkene(n_iter=100), "glad": GLAD(n_iter=50)}[name]
        return model.fit_predict(_frame(votes)).to_dict()

    return run


def ds_by_source(votes, gold, classes):
    from crowdkit.aggregation import DawidSkene

    per: dict[tuple[str, str], Counter] = defaultdict(Counter)
    latest = {(v.image, v.contributor): v for v in votes}
    for v in latest.values():
        per[(v.image, v.contributor if v.source == LOCAL else v.source)][v.answer] += 1
    pooled = [Vote(i, w, c.most_common(1)[0][0]) for (i, w), c in per.items()]
    return DawidSkene(n_iter=100).fit_predict(_frame(pooled)).to_dict()


AGGREGATORS = {
    "ours": ours,
    "skill, no pooling": skill_no_pooling,
    "majority": crowdkit("majority"),
    "dawid-skene": crowdkit("dawid-skene"),
    "glad": crowdkit("glad"),
    "dawid-skene by source": ds_by_source,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--hostile", action="store_true")
    args = ap.parse_args()
    labels = truth()
    classes = sorted(set(labels.values()))
    right: dict[str, list[float]] = defaultdict(list)
    per_seed: dict[str, list[float]] = defaultdict(list)
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        votes = crowd(labels, rng, args.hostile)
        images = sorted(labels)
        gold = {i: labels[i] for i in images if rng.random() < 0.1}
        scored = [i for i in images if i not in gold]
        for name, aggregate in AGGREGATORS.items():
            try:
                consensus = aggregate(votes, gold, classes)
            except ImportError:
                continue
            hits = [float(consensus.get(i) == labels[i]) for i in scored]
            right[name] += hits
            per_seed[name].append(float(np.mean(hits)))
    boot = np.random.default_rng(0)
    print(f"{'hostile' if args.hostile else 'honest and noisy'} crowd, {args.seeds} seeds, {len(labels)} images")
    print(f"{'aggregator':24s} accuracy  95% interval (images)")
    for name, hits in right.items():
        h = np.array(hits)
        means = [h[boot.integers(0, len(h), len(h))].mean() for _ in range(1000)]
        lo, hi = np.percentile(means, [2.5, 97.5])
        print(f"{name:24s} {np.mean(per_seed[name]):.3f}     [{lo:.3f}, {hi:.3f}]")
    print(f"command: python bench/crowd.py --seeds {args.seeds}{' --hostile' if args.hostile else ''}")


if __name__ == "__main__":
    main()
