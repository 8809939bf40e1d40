#!/usr/bin/env bash
# Every command run on tiny generated data by two versions of the code, outputs compared: for a refactor that
# must change nothing. Prints the differences left after masking timings and the two folders' paths.
#
#     benchmarks/same_outputs.sh REV [REV2]     (REV2 defaults to the working tree; ~8 min per side on 2 cores)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 \
       MPLCONFIGDIR=$WORK/mpl YOLO_CONFIG_DIR=$WORK/yolo

code_of() {  # REV -> a folder holding that version's sources (the working tree if REV is empty)
    local dst=$WORK/code-$2; mkdir -p "$dst"
    if [ -z "$1" ]; then (cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dst")
    else git -C "$ROOT" archive "$1" | tar -x -C "$dst"; fi
    echo "$dst"
}

run_all() {  # CODE OUT: each command's output in OUT/log.txt, help texts in help.txt, file hashes in hashes.txt
    local code=$1 out=$2; mkdir -p "$out"; cd "$out" || exit 1
    c() { PYTHONPATH=$code "$PY" -c "import sys; from cascade.cli import main; sys.argv[0]='cascade'; main()" "$@"; }
    log() { echo "== $*" >> log.txt; c "$@" >> log.txt 2>&1; echo "rc=$?" >> log.txt; }
    for verb in "" synth check-data convert validate-submission train-stage1 train-stage2 predict \
                merge-submissions evaluate visualize demo; do
        echo "== help $verb" >> help.txt; c $verb --help >> help.txt 2>&1
    done
    log synth --out S --patients 4 --test-patients 1 --size 192 --seed 5
    log check-data --data S/train
    log convert --data S/train --out Y --folds 2
    log train-stage2 --data S/train --config "$code/configs/stage2_cpu.yaml" epochs=1 input_size=64 batch=4 workers=0 \
        device=cpu "decoder_channels=[16,16,16,16,16]" folds_file=Y/folds.json fold=0 out=R2 cache_dir=C2
    log train-stage1 --data Y model=yolo11n-seg epochs=1 imgsz=128 batch=4 device=cpu workers=0 amp=false plots=false \
        project="$out/R1"
    local w=$out/R1/train/weights/best.pt k=R2/cpu/best.pt
    log predict --stage1 "$w" --stage2 $k --images S/test --out sub.csv --device cpu
    log predict --stage1 "$w" --stage2 $k --images S/test --out p0.csv --device cpu --shard 0/2
    log predict --stage1 "$w" --stage2 $k --images S/test --out p1.csv --device cpu --shard 1/2
    log merge-submissions p0.csv p1.csv --out merged.csv --images S/test
    log validate-submission sub.csv --images S/test
    log evaluate --data S/train --folds Y/folds.json --fold 0 --stage1 "$w" --stage2 $k --out E --device cpu
    log predict --base sub.csv --stage2 $k --images S/test --out over.csv --device cpu
    log evaluate --data S/train --out E3                                      # user mistakes: one-line errors
    log evaluate --data S/train --folds Y/folds.json --stage1 "$w" --stage1 "$w" --out E4
    log merge-submissions p0.csv --out m2.csv --images S/test
    log validate-submission nothere.csv
    log demo --out D patients=4 test_patients=1 size=128 folds=2 stage1_imgsz=64 overlays=1 \
        "stage1_overrides=[epochs=1,val=false,batch=4]" "stage2_overrides=[epochs=1,input_size=64,batch=4]" \
        "fullhand_overrides=[epochs=1,batch=2]"
    # files that hold their run's own path or time are compared after the masking below, not by hash
    find . -type f ! -name '*.txt' ! -path './C2/*' ! -name '*.pt' ! -name '*.cache' ! -name args.yaml \
        ! -name results.csv ! -name results.png -print0 | sort -z | LC_ALL=C xargs -0 sed "s#$out#OUT#g; s#$code#CODE#g" -s \
        | md5sum > content.md5
    find . -type f ! -name '*.txt' ! -path './C2/*' ! -name '*.pt' ! -name '*.cache' ! -name args.yaml \
        ! -name results.csv ! -name results.png | sort > files.txt
}

mask() { sed -E "s#$1#OUT#g; s#$2#CODE#g; s/[0-9]+(\.[0-9]+)? ?(s|ms|it\/s|s\/it|MB\/s|hours|samples\/s)\b/T/g; s/±[0-9.]+/±T/g"; }

A=$(code_of "$1" a); B=$(code_of "${2:-}" b)
(run_all "$A" "$WORK/out-a"); (run_all "$B" "$WORK/out-b")
status=0
for f in help.txt files.txt content.md5; do
    cmp -s "$WORK/out-a/$f" "$WORK/out-b/$f" || { echo "differ: $f"; status=1; }
done
# ultralytics' own speed lines and its first-run settings notice are not our output
diffs=$(diff <(mask "$WORK/out-a" "$A" < "$WORK/out-a/log.txt") <(mask "$WORK/out-b" "$B" < "$WORK/out-b/log.txt") \
    | grep "^[<>]" | grep -v "Fast image access\|Speed:\|it/s\|━\|Ultralytics Settings\|yolo settings")
[ -n "$diffs" ] && { echo "$diffs"; status=1; }
[ $status = 0 ] && echo "same outputs: $(wc -l < "$WORK/out-a/files.txt") files, $(grep -c '^== ' "$WORK/out-a/log.txt") commands"
exit $status
