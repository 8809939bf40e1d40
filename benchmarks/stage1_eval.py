"""Stage 1 on held-out patients: per-class Dice at native resolution and the carpal-region hit rate.

    .venv/bin/python benchmarks/stage1_eval.py --data DATA/train --folds YOLO/folds.json --fold 0 \
        --weights runs/stage1/.../weights/best.pt
"""

from __future__ import annotations

import argparse
import time

from cascade.evaluate import evaluate_cascade
from convert.carpal_region import describe_sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--conf", type=float, default=None, help="detection confidence (default: the weights' own)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    scores, _ = evaluate_cascade(args.data, args.folds, args.fold, args.weights, None, device=args.device,
                                 conf=args.conf)
    print(f"{len(scores.images)} held-out images, {time.perf_counter() - t0:.0f} s")
    print(scores.markdown(3))
    print(f"carpal-region hit rate: {scores.hit_rate:.3f} ({sum(scores.hits)}/{len(scores.hits)}); "
          f"region sources: {describe_sources(scores.sources)}")


if __name__ == "__main__":
    main()
