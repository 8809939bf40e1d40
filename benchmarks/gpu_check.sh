#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run: the machine; stage 2's network step alone on random tensors
# at the real input size (float32, float16 + scaler, bfloat16); stage 2's data pipeline alone with the
# machine's cores, and one core's crops/s; training time per epoch of both stages at the real-size
# configuration (stage 2 under torchrun, plainly if torchrun fails); `benchmarks/predict_bench.py` at 2048;
# the real `cascade predict` on CUDA. Sized to finish in about 8 minutes on one H100; every knob is an
# environment variable, so the same script runs as a small dry run on a CPU:
#
#   benchmarks/gpu_check.sh                                   # on a GPU machine, from the repository root
#   DEVICE=cpu PATIENTS=6 SIZE=512 S1_MODEL=yolo11n-seg S1_IMGSZ=128 S2_INPUT=64 EPOCHS=1 IMAGES=2 STEPS=2 \
#       STEP_ARGS="encoder=resnet18 batch=2" PIPE_PATIENTS=5 benchmarks/gpu_check.sh   # dry run on a CPU
#
# Everything comes back in at most 8 files of $OUT (default gpu_check_out/): machine.txt, steps.txt,
# benchmarks.md, stage1.log, stage1_results.csv, stage2.log, stage2_results.csv, predict.log. It runs from the
# source tree, so nothing needs installing as `cascade`; the packages a GPU image lacks
# (benchmarks/gpu_wheels.txt) are installed first from the wheels in $WHEELS (default .whl/, when it exists)
# into a scratch folder put on PYTHONPATH. A step whose input is missing is logged as skipped, a step that fails
# is logged, and the steps that do not need its output still run; the exit status says whether all passed.
set -uo pipefail

DEVICE=${DEVICE:-cuda:0}
PATIENTS=${PATIENTS:-40}           # 80 images at 2048: enough batches for a steady per-epoch time
SIZE=${SIZE:-2048}
S1_MODEL=${S1_MODEL:-yolo11l-seg}  # a large YOLO11 segmentation model, from scratch (nothing is downloaded)
S1_IMGSZ=${S1_IMGSZ:-1024}
S1_BATCH=${S1_BATCH:-16}
S2_INPUT=${S2_INPUT:-1024}
S2_BATCH=${S2_BATCH:-16}
STEPS=${STEPS:-30}                 # stage 2 network steps timed per precision, after 5 of warm-up
STEP_ARGS=${STEP_ARGS:-}           # more key=value for the network step benchmark
PIPE_PATIENTS=${PIPE_PATIENTS:-10} # generated patients for the data-pipeline benchmarks
EPOCHS=${EPOCHS:-3}                # the first epoch includes warm-up: report the later ones
IMAGES=${IMAGES:-32}               # predict benchmark images at $SIZE
BATCH=${BATCH:-8}                  # predict batch
WORKERS=${WORKERS:-8}              # stage 1's loader workers (stage 2 takes its default: the cores per process)
OUT=${OUT:-gpu_check_out}
WORK=${WORK:-$(mktemp -d)}

WHEELS=${WHEELS:-.whl}

mkdir -p "$OUT"
: > "$OUT/steps.txt"
: > "$OUT/benchmarks.md"
step() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.txt"; }
failed=0
fail() { echo "!! FAILED: $*" | tee -a "$OUT/steps.txt"; failed=1; }
# need FILE...: true when every input of the next step exists; otherwise the step is logged as skipped
need() { local f; for f in "$@"; do [[ -e $f ]] || { fail "skipped: $f is missing"; return 1; }; done; }
# bench TITLE COMMAND...: the command's table under a heading in benchmarks.md (its errors in steps.txt)
bench() { printf '\n## %s\n\n' "$1" >> "$OUT/benchmarks.md"; shift; "$@" 2>>"$OUT/steps.txt" | tee -a "$OUT/benchmarks.md"; }
versions() {  # the packages that decide whether the run works, as python3 finds them now
    python3 -c '
import importlib.metadata as md
names = ("torch", "timm", "opencv-python", "opencv-python-headless", "ultralytics-opencv-headless", "typing-extensions")
def version(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "missing"
print(", ".join(f"{n} {version(n)}" for n in names))' 2>&1
}

step "machine"
{
    nvidia-smi 2>&1 || echo "nvidia-smi: not available"
    echo "cores: $(nproc) usable, $(getconf _NPROCESSORS_ONLN) online"
    free -g 2>&1 | head -2
    echo "/dev/shm: $(df -h /dev/shm 2>&1 | tail -1)"
    python3 -c 'import platform; print("Python", platform.python_version(), platform.machine())' 2>&1
    echo "found here: $(versions)"
} > "$OUT/machine.txt" 2>&1

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$WHEELS"/*.whl \
        || { echo "wheel install from $WHEELS failed" | tee -a "$OUT/steps.txt"; exit 1; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "with the wheels: $(versions)" >> "$OUT/machine.txt"
cat "$OUT/machine.txt"
cli() { python3 -m cascade.cli "$@"; }
if ! python3 -c "import polars" 2>/dev/null; then
    # ultralytics reads its results.csv back with polars when it saves a checkpoint (and fails without it);
    # a machine without polars (too large to carry to an offline GPU box) gets a stub: the checkpoint then
    # simply lacks the copy of results.csv, which stays on disk
    mkdir -p "$WORK/stub/polars"
    echo 'def read_csv(*a, **k): raise RuntimeError("polars stub")' > "$WORK/stub/polars/__init__.py"
    export PYTHONPATH="$PYTHONPATH:$WORK/stub"
fi
gpu=$([[ $DEVICE == cpu ]] && echo cpu || echo "${DEVICE#cuda:}")
[[ $DEVICE == cpu ]] && export OMP_NUM_THREADS=1  # a CPU dry run on a shared machine: threads spin-wait

step "stage 2 network step alone: input $S2_INPUT, batch $S2_BATCH, $STEPS steps per precision"
bench "Stage 2 network step (random tensors, no data)" python3 benchmarks/stage2_step_bench.py --device "$DEVICE" \
    --steps "$STEPS" input_size="$S2_INPUT" batch="$S2_BATCH" $STEP_ARGS || fail "network step benchmark"
step "stage 2 data pipeline alone: $PIPE_PATIENTS patients at $SIZE, input $S2_INPUT, the default workers"
bench "Stage 2 data pipeline (DataLoader, default workers, no network)" python3 benchmarks/stage2_bench.py \
    --patients "$PIPE_PATIENTS" --size "$SIZE" --pipeline-only --config configs/stage2.yaml \
    input_size="$S2_INPUT" batch="$S2_BATCH" || fail "data pipeline benchmark"
step "stage 2 training crops on one core"
bench "Stage 2 training crops on one core" python3 benchmarks/crop_bench.py --patients "$PIPE_PATIENTS" \
    --size "$SIZE" --passes 1 input_size="$S2_INPUT" || fail "crop benchmark"

step "synth: $PATIENTS patients at $SIZE"
cli synth --out "$WORK/data" --patients "$PATIENTS" --size "$SIZE" --seed 1 || { fail synth; exit 1; }
step "convert at $S1_IMGSZ"
cli convert --data "$WORK/data/train" --out "$WORK/yolo" --imgsz "$S1_IMGSZ" --folds 5 --fold 0 || { fail convert; exit 1; }

step "stage 1: $S1_MODEL at $S1_IMGSZ, batch $S1_BATCH, $EPOCHS epochs"
if need "$WORK/yolo/data.yaml"; then
    cli train-stage1 --data "$WORK/yolo" --config configs/stage1.yaml model="$S1_MODEL" imgsz="$S1_IMGSZ" \
        batch="$S1_BATCH" epochs="$EPOCHS" device="$gpu" workers="$WORKERS" plots=false project="$WORK/runs" \
        name=s1 2>&1 | tr '\r' '\n' > "$OUT/stage1.log" || fail "stage 1 training (see stage1.log)"
    need "$WORK/runs/s1/results.csv" && cp "$WORK/runs/s1/results.csv" "$OUT/stage1_results.csv" \
        && cat "$OUT/stage1_results.csv"
fi

step "stage 2: torchrun, 1 process, input $S2_INPUT, batch $S2_BATCH, $EPOCHS epochs"
s2=(--data "$WORK/data/train" --config configs/stage2.yaml input_size="$S2_INPUT" batch="$S2_BATCH"
    epochs="$EPOCHS" out="$WORK/runs" name=s2 cache_dir="$WORK/cache" folds_file="$WORK/yolo/folds.json")
if [[ $DEVICE == cpu ]]; then
    s2+=(device=cpu amp=false channels_last=false)
else
    s2+=(device="$DEVICE")  # one process: the GPU asked for (several processes each take their local rank's)
fi
if need "$WORK/yolo/folds.json"; then
    if ! python3 -m torch.distributed.run --standalone --nproc_per_node=1 -m cascade.cli train-stage2 "${s2[@]}" \
            2>&1 | tee "$OUT/stage2.log"; then
        fail "stage 2 under torchrun (see stage2.log); again without torchrun, so the predict steps have weights"
        cli train-stage2 "${s2[@]}" resume=false 2>&1 | tee -a "$OUT/stage2.log" || fail "stage 2 training"
    fi
    need "$WORK/runs/s2/results.csv" && cp "$WORK/runs/s2/results.csv" "$OUT/stage2_results.csv" \
        && cat "$OUT/stage2_results.csv"  # epoch and validation times, peak GPU memory
fi

s1w="$WORK/runs/s1/weights/last.pt" s2w="$WORK/runs/s2/last.pt"
step "predict benchmark: $IMAGES images at $SIZE, batch $BATCH"
if need "$s1w" "$s2w"; then
    bench "Predict ($IMAGES images at $SIZE, batch $BATCH)" python3 benchmarks/predict_bench.py --stage1 "$s1w" \
        --stage2 "$s2w" --images "$IMAGES" --size "$SIZE" --batch "$BATCH" --device "$DEVICE" || fail "predict benchmark"
fi
step "cascade predict on $DEVICE"
cli synth --out "$WORK/test" --patients 1 --test-patients $(((IMAGES + 1) / 2)) --size "$SIZE" --seed 7 >/dev/null
if need "$s1w" "$s2w" "$WORK/test/test"; then
    cli predict --stage1 "$s1w" --stage2 "$s2w" --images "$WORK/test/test" --out "$WORK/submission.csv" \
        --device "$DEVICE" --batch "$BATCH" 2>&1 | tee "$OUT/predict.log" || fail "cascade predict"
fi
step "done$([[ $failed == 1 ]] && echo ', with failures (above)')"
exit $failed
