"""How long a person waits for a verdict: one ``learn`` turn of a bundled model on 2 cores.

New labels come from a collection the model never trained on, relabelled to one of its
classes (by default the ESA/Hubble galaxy-type images, every one a galaxy, for ``dso``). The
turn runs in a fresh installation folder, so the bundled model is untouched; each kind of
challenger starts from the same champion. Prints the decision, its figures and the wall time.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/learn_turn.py --kinds head full
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dso")
    ap.add_argument("--source", default="hubble-galaxy-types", help="collection the new labels come from")
    ap.add_argument("--label", default="galaxy", help="the champion's class every new image gets")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--kinds", nargs="+", default=["head"], choices=["head", "full"])
    args = ap.parse_args()
    from astroclassify.config import Folders
    from astroclassify.learning.loop import learn

    data_dir = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    src = data_dir / args.source
    rows = sorted(csv.DictReader((src / "manifest.csv").open()), key=lambda r: r["file"])[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        new = Path(tmp) / "new"
        (new / "images").mkdir(parents=True)
        with (new / "manifest.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "label"])
            for r in rows:
                name = Path(r["file"]).name
                shutil.copy(src / r["file"], new / "images" / name)
                w.writerow([f"images/{name}", args.label])
        print(f"{len(rows)} images of {args.source} labelled {args.label} for {args.model}\n")
        print(
            "| challenger | decision | new labels kept | gold n | macro-F1 champion -> challenger | difference [95% paired] | verdict |"
        )
        print("|---|---|---|---|---|---|---|")
        for kind in args.kinds:
            models = Path(tmp) / f"models-{kind}"
            started = time.perf_counter()
            r = learn(args.model, imported=[new], kind=kind, folders=Folders(models_dir=models, data_dir=data_dir))
            took = time.perf_counter() - started
            c = r.comparison
            figures = (
                f"{c.champion_macro_f1:.3f} -> {c.challenger_macro_f1:.3f} | {c.difference:+.3f} "
                f"[{c.difference_ci[0]:+.3f}, {c.difference_ci[1]:+.3f}]"
                if c
                else "- | -"
            )
            kept = sum(r.snapshot.counts.values()) - len(r.suspects) if r.snapshot else 0
            print(f"| {kind} | {r.decision} | {kept} | {r.gold} | {figures} | {took:.0f} s |", flush=True)
    print(
        f"\nreproduce: ASTROCLASSIFY_DATA_DIR=../shared/data python bench/learn_turn.py --kinds {' '.join(args.kinds)}"
    )


if __name__ == "__main__":
    main()
