"""Held-out accuracy, planet F1 and calibration of a dso model against the issue's targets.

Runs the public CLI (`astroclassify evaluate --json`), which scores only the rows of each
dataset that the model's splits.csv marks as test (never trained or tuned on).

    python bench/dso_targets.py            # the bundled model
    python bench/dso_targets.py --model runs/dso
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys


def evaluate(model: str, *data: str) -> dict:
    cmd = [shutil.which("astroclassify") or "astroclassify", "evaluate", "--model", model, "--json"]
    for d in data:
        cmd += ["--data", d]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dso")
    args = ap.parse_args()
    hubble = evaluate(args.model, "hubble-dso")
    both = evaluate(args.model, "hubble-dso", "nasa-planets-galaxies")
    rows = [
        ("hubble-dso test accuracy", hubble["accuracy"], hubble["ci"]["accuracy"], ">=", 0.92),
        ("hubble-dso test macro-F1 (galaxy/nebula)", hubble["macro_f1"], hubble["ci"]["macro_f1"], ">=", 0.92),
        (
            "planet-vs-rest F1 (both test splits)",
            both["per_class"]["planet"]["f1"],
            both["per_class"]["planet"].get("f1_ci"),
            ">=",
            0.95,
        ),
        ("hubble-dso test ECE after temperature scaling", hubble["ece"], hubble["ci"]["ece"], "<=", 0.05),
        ("both test splits ECE after temperature scaling", both["ece"], both["ci"]["ece"], "<=", 0.05),
    ]
    print(f"model {hubble['model']}: hubble-dso test n={hubble['n']}, both test splits n={both['n']}")
    print(f"  [95% intervals: {hubble['ci']['method']}]")
    for name, value, ci, op, target in rows:
        ok = value >= target if op == ">=" else value <= target
        interval = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        print(f"  {name:<48} {value:.3f} {interval:<12}  (target {op} {target})  {'met' if ok else 'NOT met'}")
    print(f"  hubble-dso confusion {hubble['confusion_matrix']}")
    print(f"reproduce: astroclassify evaluate --model {args.model} --data hubble-dso --json")
    print(
        f"           astroclassify evaluate --model {args.model} --data hubble-dso --data nasa-planets-galaxies --json"
    )


if __name__ == "__main__":
    main()
