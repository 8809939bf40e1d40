#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run: training time per epoch of both stages at the real-size
# configuration (stage 2 under torchrun), `benchmarks/predict_bench.py` at 2048 with AMP, and the real
# `cascade predict` on CUDA. Sized to finish in about 6 minutes on one H100; every knob is an environment
# variable, so the same script runs as a small dry run on a CPU:
#
#   benchmarks/gpu_check.sh                                   # on a GPU machine, from the repository root
#   DEVICE=cpu PATIENTS=6 SIZE=512 S1_MODEL=yolo11n-seg S1_IMGSZ=128 S2_INPUT=64 EPOCHS=1 IMAGES=2 \
#       benchmarks/gpu_check.sh                               # dry run of every step on a CPU (~2 min)
#
# Logs and tables go to $OUT (default gpu_check_out/). It runs from the source tree, so nothing needs installing
# as `cascade`; the packages a GPU image lacks (benchmarks/gpu_wheels.txt) are installed first from the wheels in
# $WHEELS (default .whl/, when it exists) into a scratch folder put on PYTHONPATH. A step that fails is logged and
# the steps that do not need its output still run; the exit status says whether all of them passed.
set -uo pipefail

DEVICE=${DEVICE:-cuda:0}
PATIENTS=${PATIENTS:-40}          # 80 images at 2048: enough batches for a steady per-epoch time
SIZE=${SIZE:-2048}
S1_MODEL=${S1_MODEL:-yolo11l-seg} # a large YOLO11 segmentation model, from scratch (nothing is downloaded)
S1_IMGSZ=${S1_IMGSZ:-1024}
S1_BATCH=${S1_BATCH:-16}
S2_INPUT=${S2_INPUT:-1024}
S2_BATCH=${S2_BATCH:-16}
EPOCHS=${EPOCHS:-3}               # the first epoch includes warm-up: report the later ones
IMAGES=${IMAGES:-32}              # predict benchmark images at $SIZE
BATCH=${BATCH:-8}                 # predict batch
WORKERS=${WORKERS:-8}
OUT=${OUT:-gpu_check_out}
WORK=${WORK:-$(mktemp -d)}

WHEELS=${WHEELS:-.whl}

mkdir -p "$OUT"
: > "$OUT/steps.txt"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl \
        || { echo "wheel install from $WHEELS failed" | tee -a "$OUT/steps.txt"; exit 1; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cli() { python3 -m cascade.cli "$@"; }
if ! python3 -c "import polars" 2>/dev/null; then
    # ultralytics reads its results.csv back with polars when it saves a checkpoint (and fails without it);
    # a machine without polars (too large to carry to an offline GPU box) gets a stub: the checkpoint then
    # simply lacks the copy of results.csv, which stays on disk
    mkdir -p "$WORK/stub/polars"
    echo 'def read_csv(*a, **k): raise RuntimeError("polars stub")' > "$WORK/stub/polars/__init__.py"
    export PYTHONPATH="$PYTHONPATH:$WORK/stub"
fi
step() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.txt"; }
failed=0
fail() { echo "!! FAILED: $*" | tee -a "$OUT/steps.txt"; failed=1; }
gpu=$([[ $DEVICE == cpu ]] && echo cpu || echo "${DEVICE#cuda:}")

step "machine"
python3 - <<'EOF' | tee "$OUT/machine.txt"
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"{platform.machine()}, {gpu}, torch {torch.__version__}, Python {platform.python_version()}")
EOF

step "synth: $PATIENTS patients at $SIZE"
cli synth --out "$WORK/data" --patients "$PATIENTS" --size "$SIZE" --seed 1 || { fail synth; exit 1; }
step "convert at $S1_IMGSZ"
cli convert --data "$WORK/data/train" --out "$WORK/yolo" --imgsz "$S1_IMGSZ" --folds 5 --fold 0 || { fail convert; exit 1; }

step "stage 1: $S1_MODEL at $S1_IMGSZ, batch $S1_BATCH, $EPOCHS epochs"
cli train-stage1 --data "$WORK/yolo" --config configs/stage1.yaml model="$S1_MODEL" imgsz="$S1_IMGSZ" \
    batch="$S1_BATCH" epochs="$EPOCHS" device="$gpu" workers="$WORKERS" plots=false project="$WORK/runs" name=s1 \
    2>&1 | tr '\r' '\n' > "$OUT/stage1.log" || fail "stage 1 training (see stage1.log)"
cp "$WORK/runs/s1/results.csv" "$OUT/stage1_results.csv" && cat "$OUT/stage1_results.csv"

step "stage 2: torchrun, 1 process, input $S2_INPUT, batch $S2_BATCH, $EPOCHS epochs"
s2=(--data "$WORK/data/train" --config configs/stage2.yaml input_size="$S2_INPUT" batch="$S2_BATCH"
    epochs="$EPOCHS" workers="$WORKERS" out="$WORK/runs" name=s2 cache_dir="$WORK/cache"
    folds_file="$WORK/yolo/folds.json")
if [[ $DEVICE == cpu ]]; then
    s2+=(device=cpu amp=false channels_last=false)
    export OMP_NUM_THREADS=1
else
    s2+=(device="$DEVICE")  # one process: the GPU asked for (several processes each take their local rank's)
fi
python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m cascade.cli train-stage2 "${s2[@]}" 2>&1 \
    | tee "$OUT/stage2.log" || fail "stage 2 training (see stage2.log)"
unset OMP_NUM_THREADS

s1w="$WORK/runs/s1/weights/last.pt" s2w="$WORK/runs/s2/last.pt"
if [[ -f $s1w && -f $s2w ]]; then
    step "predict benchmark: $IMAGES images at $SIZE, batch $BATCH"
    python3 benchmarks/predict_bench.py --stage1 "$s1w" --stage2 "$s2w" --images "$IMAGES" --size "$SIZE" \
        --batch "$BATCH" --device "$DEVICE" | tee "$OUT/predict_bench.md" || fail "predict benchmark"

    step "cascade predict on $DEVICE"
    cli synth --out "$WORK/test" --patients 1 --test-patients $(((IMAGES + 1) / 2)) --size "$SIZE" --seed 7 >/dev/null
    cli predict --stage1 "$s1w" --stage2 "$s2w" --images "$WORK/test/test" --out "$WORK/submission.csv" \
        --device "$DEVICE" --batch "$BATCH" 2>&1 | tee "$OUT/predict.log" || fail "cascade predict"
else
    fail "predict steps skipped: no model of stage 1 ($s1w) or stage 2 ($s2w)"
fi
step "done$([[ $failed == 1 ]] && echo ', with failures (above)')"
exit $failed
