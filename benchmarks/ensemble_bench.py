"""Single models against ensembles (stage 1 vote, stage 2 mean) on the same held-out fold.

Every model given must have been trained on the other folds only (e.g. the same fold with other seeds), so the
held-out patients stay unseen by all of them. Prints a markdown table: Dice at native resolution, stage 1 alone
and the cascade at the checkpoints' thresholds, plain mean and weighed to the test set's share of bent wrists.

  .venv/bin/python benchmarks/ensemble_bench.py --data demo_out/data/train --folds demo_out/yolo/folds.json \
      --stage1 A.pt B.pt C.pt --stage2 X.pt Y.pt Z.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade.evaluate import evaluate_folds  # noqa: E402
from convert.wrist_pose import TEST_BENT_SHARE  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--folds", required=True, type=Path)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--stage1", nargs="+", required=True, type=Path)
    ap.add_argument("--stage2", nargs="+", required=True, type=Path)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    s1, s2 = args.stage1, args.stage2
    rows = [(f"stage 1 #{k + 1}, stage 2 #1", [a], [s2[0]]) for k, a in enumerate(s1)]
    rows += [(f"stage 1 #1, stage 2 #{k + 1}", [s1[0]], [b]) for k, b in enumerate(s2[1:], 1)]
    rows += [(f"stage 1 vote of {len(s1)}, stage 2 #1", s1, [s2[0]]),
             (f"stage 1 #1, stage 2 mean of {len(s2)}", [s1[0]], s2),
             (f"stage 1 vote of {len(s1)}, stage 2 mean of {len(s2)}", s1, s2)]
    print(f"| models | stage 1 mean | cascade mean | cascade carpal | cascade mean, {TEST_BENT_SHARE:.0%} bent "
          "| cascade carpal, same | s |")
    print("|---|---|---|---|---|---|---|")
    for name, first, second in rows:
        start = time.perf_counter()
        scores, _ = evaluate_folds(args.data, args.folds, [(args.fold, first, second)], device=args.device)
        table, poses = scores.table(), scores.pose_table()
        print(f"| {name} | {table.loc['mean', 'stage1_dice']:.3f} | {table.loc['mean', 'cascade_dice']:.3f} "
              f"| {table.loc['carpal_mean', 'cascade_dice']:.3f} | {poses.loc['cascade', 'test_mix_mean']:.3f} "
              f"| {poses.loc['cascade', 'test_mix_carpal']:.3f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
