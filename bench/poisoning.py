"""How many of a poisoner's labels the loop's cleaning catches, and how many honest labels it doubts.

New labels are galaxies the bundled ``dso`` never trained on (ESA/Hubble galaxy-type press
images and Galaxy Zoo example cutouts); a share of them (5, 20, 50 %) is relabelled by a
poisoner: all to ``nebula`` (coordinated, the issue-36 attack) or each to a random other class.
Every rule sees the same embeddings of the champion:

  oof        today's rule (learning/cleaning.py): logistic regression on the champion's training
             images plus the other folds of the new labels, a label under 0.2 out of fold doubted;
  oof+cl     cleanlab's find_label_issues on those same out-of-fold probabilities;
  trusted    the same regression fitted on the champion's training images alone (new labels never
             teach the judge), a label under 0.2 doubted;
  trusted+cl cleanlab's find_label_issues on the trusted probabilities.

Prints, per rule and poison share, the share of poisoned labels caught and of honest ones doubted.

    pip install cleanlab==2.9.0   # measured here, not a dependency
    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/poisoning.py [--n 200] [--seeds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="new labels per trial")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    from cleanlab.filter import find_label_issues

    from astroclassify.inference.embedding import embed_images
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.learning.cleaning import oof_probabilities, trusted_probabilities
    from astroclassify.modelfolder.folder import bundled_folder
    from astroclassify.preparation.splits import read_splits

    data = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", ROOT.parent / "shared" / "data"))
    champion = bundled_folder("dso")
    assert champion is not None
    predictor = OnnxPredictor(champion, detector=False)
    labels = list(predictor.labels)
    taken: dict[str, int] = {}
    reference: list[tuple[Path, str]] = []
    for r in read_splits(champion / "splits.csv"):
        if r.split == "train" and taken.get(r.label, 0) < 60 and (data / r.key).is_file():
            reference.append((data / r.key, r.label))
            taken[r.label] = taken.get(r.label, 0) + 1
    pool = [
        data / source / row["file"]
        for source in ("hubble-galaxy-types", "gz-tree-examples")
        for row in csv.DictReader((data / source / "manifest.csv").open())
    ]
    x_ref = embed_images(predictor, [p for p, _ in reference])
    y_ref = np.array([labels.index(lab) for _, lab in reference])
    x_pool = embed_images(predictor, pool)
    galaxy, nebula = labels.index("galaxy"), labels.index("nebula")
    print(f"dso champion; reference {len(reference)} training images; new labels drawn from {len(pool)} galaxies")
    print(
        f"{'poisoner':12s} {'share':>5s}  " + "  ".join(f"{r:>17s}" for r in ("oof", "oof+cl", "trusted", "trusted+cl"))
    )
    for style in ("nebula", "random"):
        for share in (0.05, 0.2, 0.5):
            caught: dict[str, list[float]] = {}
            doubted: dict[str, list[float]] = {}
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                pick = rng.choice(len(pool), size=min(args.n, len(pool)), replace=False)
                x = x_pool[pick]
                y = np.full(len(pick), galaxy)
                bad = rng.random(len(pick)) < share
                others = [c for c in range(len(labels)) if c != galaxy]
                y[bad] = nebula if style == "nebula" else rng.choice(others, size=int(bad.sum()))
                probs = {
                    "oof": oof_probabilities(x, y, x_ref, y_ref, len(labels)),
                    "trusted": trusted_probabilities(x, x_ref, y_ref, len(labels)),
                }
                for name, p in probs.items():
                    for rule in (name, f"{name}+cl"):
                        if rule.endswith("+cl"):
                            flagged = find_label_issues(y, p, filter_by="prune_by_noise_rate")
                        else:
                            flagged = p[np.arange(len(y)), y] < 0.2
                        caught.setdefault(rule, []).append(float(flagged[bad].mean()) if bad.any() else np.nan)
                        doubted.setdefault(rule, []).append(float(flagged[~bad].mean()))
            cells = [
                f"{np.nanmean(caught[r]):5.2f} / {np.mean(doubted[r]):4.2f}    "
                for r in ("oof", "oof+cl", "trusted", "trusted+cl")
            ]
            print(f"{style:12s} {share:5.0%}  " + "  ".join(f"{c:>17s}" for c in cells))
    print("cells: poisoned labels caught / honest labels doubted, mean over seeds")
    print(f"command: ASTROCLASSIFY_DATA_DIR={data} python bench/poisoning.py --n {args.n} --seeds {args.seeds}")


if __name__ == "__main__":
    main()
