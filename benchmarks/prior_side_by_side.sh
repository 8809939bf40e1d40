#!/usr/bin/env bash
# The demo's stage 2 (crop alone) and the same stage 2 trained with the prior (`prior.classes=neighbours`, all
# else equal), each pasted over the demo's weak stage 1 and over its baseline, scored on the demo's labelled test
# set. Paste plans are chosen on the held-out fold; the test labels are read only by the final scoring. Needs a
# finished `make demo` folder (about 12 minutes more on 2 cores):
#
#   bash benchmarks/prior_side_by_side.sh                      # DEMO=demo_out OUT=prior_side_by_side_out
#   DEMO=/tmp/tdemo OUT=/tmp/tsbs S2_ARGS="epochs=1 input_size=64 decoder_channels=[16,16,16,16,16]" \
#       bash benchmarks/prior_side_by_side.sh   # a dry run over a tiny demo (that demo's stage2_overrides), 3 min
#
# SEEDS="0 1 2" trains both models once per stage 2 seed (the crop model of seed 0 is the demo's own); the
# table gives mean [min, max] over them. Every step is skipped when its output exists; the table is
# $OUT/summary.md (benchmarks/strong_base_summary.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CASCADE=${CASCADE:-.venv/bin/cascade}
PYTHON=${PYTHON:-.venv/bin/python}
DEMO=${DEMO:-demo_out}
OUT=${OUT:-prior_side_by_side_out}
PRIOR=${PRIOR:-neighbours}
DEVICE=${DEVICE:-cpu}
S2_ARGS=${S2_ARGS:-}   # key=value the demo's stage2_overrides held, if any (the prior model must match it)
PRIOR_ARGS=${PRIOR_ARGS:-}  # key=value for the prior model alone (other corruptions, gate)
SEEDS=${SEEDS:-0}
DATA=$DEMO/data
FOLDS=$DEMO/yolo/folds.json
STAGE1=$DEMO/runs/stage1/demo/weights/best.pt
for f in "$FOLDS" "$STAGE1" "$DEMO/runs/stage2/demo/best.pt" "$DEMO/base/heldout.csv" "$DEMO/base/test.csv"; do
    [ -e "$f" ] || { echo "error: $f is missing: run \`make demo\` (or set DEMO) first" >&2; exit 2; }
done
mkdir -p "$OUT/test" "$OUT/sub"

score() {  # score SUBMISSION NAME: Dice on the test labels
    [ -f "$OUT/test/$2/dice.csv" ] || "$CASCADE" evaluate --data "$DATA/test" --labels "$DATA/test_labels" \
        --submission "$1" --out "$OUT/test/$2" > /dev/null
}

train() {  # train NAME SEED key=value...: the demo's stage 2 settings and fold, another name and seed
    local name=$1 seed=$2
    shift 2
    [ -f "$OUT/runs/$name/best.pt" ] || "$CASCADE" train-stage2 --data "$DATA/train" --config configs/stage2_cpu.yaml \
        folds_file="$FOLDS" fold=0 out="$OUT/runs" name="$name" seed="$seed" device="$DEVICE" resume=false $S2_ARGS "$@"
}

# the references: stage 1 alone and the baseline alone, on the test images
[ -f "$OUT/sub/stage1.csv" ] || "$CASCADE" predict --stage1 "$STAGE1" --stage1-only --images "$DATA/test/DCM" \
    --out "$OUT/sub/stage1.csv" --device "$DEVICE" > /dev/null
score "$OUT/sub/stage1.csv" stage1
score "$DEMO/base/test.csv" base

for seed in $SEEDS; do
    train "prior_s$seed" "$seed" prior.classes="$PRIOR" $PRIOR_ARGS
    [ "$seed" = 0 ] || train "crop_s$seed" "$seed"
    for model in crop prior; do
        ckpt=$OUT/runs/${model}_s$seed/best.pt
        [ "$model$seed" = crop0 ] && ckpt=$DEMO/runs/stage2/demo/best.pt  # the demo's stage 2 is seed 0's crop model
        for over in stage1 base; do
            name=${over}_${model}_s$seed
            if [ $over = stage1 ]; then
                val=(--stage1 "$STAGE1"); test=(--stage1 "$STAGE1")
            else
                val=(--base "$DEMO/base/heldout.csv"); test=(--base "$DEMO/base/test.csv")
            fi
            [ -d "$OUT/val/$name" ] || "$CASCADE" evaluate --data "$DATA/train" --folds "$FOLDS" --fold 0 "${val[@]}" \
                --stage2 "$ckpt" --out "$OUT/val/$name" --device "$DEVICE" > /dev/null
            plan=()
            [ -f "$OUT/val/$name/paste.json" ] && plan=(--paste-file "$OUT/val/$name/paste.json")
            [ -f "$OUT/sub/$name.csv" ] || "$CASCADE" predict --images "$DATA/test/DCM" "${test[@]}" --stage2 "$ckpt" \
                "${plan[@]}" --out "$OUT/sub/$name.csv" --device "$DEVICE" > /dev/null
            score "$OUT/sub/$name.csv" "$name"
        done
    done
done

# two references: each cascade is set against the full-hand prediction it was pasted over
for over in stage1 base; do
    mkdir -p "$OUT/over_$over/test"
    rm -rf "$OUT/over_$over/test/"* "$OUT/over_$over/val"
    cp -r "$OUT/test/$over" "$OUT/over_$over/test/base"
    for report in "$OUT/test/${over}"_*; do
        name=${report##*/${over}_}
        cp -r "$report" "$OUT/over_$over/test/$name"
        [ -d "$OUT/val/${over}_$name" ] && mkdir -p "$OUT/over_$over/val" \
            && cp -r "$OUT/val/${over}_$name" "$OUT/over_$over/val/$name"
    done
    echo "## over $over"
    "$PYTHON" benchmarks/strong_base_summary.py "$OUT/over_$over"
done | tee "$OUT/summary.md"
