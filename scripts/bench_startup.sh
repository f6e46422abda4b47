#!/usr/bin/env bash
# Whole-process start-up of the quick commands and of one stylize, RUNS runs each (wall seconds):
# `fastmmd --help`, `fastmmd models`, `fastmmd export --info starry_night` and `fastmmd stylize
# starry_night` of one 512x384 photo (generated). Results: docs/benchmarks.md ("Start-up").
#
#   bash scripts/bench_startup.sh [REPO]    # REPO: the checkout to time (default: this one); PYTHON, RUNS, OMP_NUM_THREADS
set -euo pipefail
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
PY=${PYTHON:-python3}
RUNS=${RUNS:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export PYTHONPATH=$REPO
"$PY" -c "from PIL import Image; import random; random.seed(0); Image.frombytes('RGB', (512, 384), bytes(random.randrange(256) for _ in range(512 * 384 * 3))).save('photo.png')"
timed() {  # timed LABEL ARGS...: RUNS whole-process wall times of `python -m fastmmd ARGS`
    local label=$1; shift
    local times=()
    for _ in $(seq "$RUNS"); do
        local start end
        start=$(date +%s%N)
        "$PY" -m fastmmd "$@" > /dev/null 2> err.txt || { echo "$label failed: $(tail -n 1 err.txt)" >&2; exit 1; }
        end=$(date +%s%N)
        times+=("$(awk "BEGIN { printf \"%.2f\", ($end - $start) / 1e9 }")")
    done
    echo "$label | ${times[*]}"
}
timed "--help" --help
timed "models" models
timed "export --info starry_night" export --info starry_night
timed "stylize starry_night photo.png (512x384)" stylize starry_night photo.png --output-dir out
