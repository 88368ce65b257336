"""Training images/s on this CPU: plain vs channels_last vs bf16 autocast, with and without tcmalloc.

Runs itself once per allocator (tcmalloc must be preloaded before Python starts), timing
full forward+backward+AdamW steps on random batches of the chosen architecture.

    python bench/train_throughput.py --model efficientnet_lite0 --size 224 --batch 32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def measure(model_name: str, size: int, batch: int, channels_last: bool, bf16: bool = False, steps: int = 4) -> float:
    import torch

    from astroclassify.models import create_model

    model = create_model(model_name, pretrained=False, num_classes=3)
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters())
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # mixed precision, as on a GPU
            loss = model(x).float().logsumexp(1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return batch / min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        for cl, bf16 in ((False, False), (True, False), (True, True)):
            print(
                f"{'tcmalloc' if 'tcmalloc' in os.environ.get('LD_PRELOAD', '') else 'glibc malloc':>13}, "
                f"channels_last={cl!s:<5} bf16 autocast={bf16!s:<5}: "
                f"{measure(args.model, args.size, args.batch, cl, bf16):6.1f} train images/s",
                flush=True,
            )
        return
    from astroclassify.config import TCMALLOC_CANDIDATES

    base = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        args.model,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
    ]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(base, env=env, check=True)
    lib = next((p for p in TCMALLOC_CANDIDATES if os.path.exists(p)), None)
    if lib:
        subprocess.run(base, env={**env, "LD_PRELOAD": lib}, check=True)
    else:
        print("tcmalloc not installed (apt-get install libtcmalloc-minimal4)")
    print(f"reproduce: python bench/train_throughput.py --model {args.model} --size {args.size} --batch {args.batch}")


if __name__ == "__main__":
    main()
