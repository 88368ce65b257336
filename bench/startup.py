"""How long a user waits before the first answer: ``import astroclassify``, then ``load`` and one prediction.

Each repeat is a fresh interpreter (what a script, a notebook kernel or the CLI pays once);
the figure is the median over repeats, with the modules each step pulled in. ``--core``
blocks the extras' libraries (torch, SQLAlchemy, Dask, scikit-learn, FastAPI, typer, ...) as
if never installed, to show the core install's figures.

    python bench/startup.py --repeats 7
    python bench/startup.py --repeats 7 --core
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

EXTRAS = ["torch", "sqlalchemy", "typer", "rich", "fastapi", "dask", "distributed", "pyarrow", "sklearn", "scipy"]
EXTRAS += ["matplotlib", "jinja2", "httpx", "bs4", "hnswlib", "skimage", "yaml", "uvicorn", "onnx"]

PROBE = """
import sys, time, json
for m in {blocked!r}: sys.modules[m] = None
t0 = time.perf_counter()
import astroclassify
t1 = time.perf_counter()
clf = astroclassify.load("dso")
t2 = time.perf_counter()
clf.predict({image!r})
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "load": t2 - t1, "first_predict": t3 - t2, "modules": len(sys.modules)}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--core", action="store_true", help="block the extras' libraries")
    ap.add_argument(
        "--image", default=str(Path(__file__).resolve().parents[2] / "shared/data/hubble-dso/galaxy/heic0007b.jpg")
    )
    args = ap.parse_args()
    code = PROBE.format(blocked=EXTRAS if args.core else [], image=args.image)
    runs = [json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"{'core' if args.core else 'full'} install, median of {args.repeats} fresh interpreters: "
        f"import astroclassify {med['import'] * 1000:.0f} ms; load('dso') {med['load'] * 1000:.0f} ms; "
        f"first predict {med['first_predict'] * 1000:.0f} ms; total {sum(med[k] for k in ('import', 'load', 'first_predict')):.2f} s; "
        f"{med['modules']:.0f} modules loaded"
    )
    print(f"reproduce: python bench/startup.py --repeats {args.repeats}{' --core' if args.core else ''}")


if __name__ == "__main__":
    main()
