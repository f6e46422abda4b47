#!/usr/bin/env bash
# The main job on the embedded default, on a fresh CPU machine, offline: install, make the sample
# data (procedural photos + a procedural painting), train a small network for a few minutes
# (configs/quickstart.yaml), export it (TorchScript and torch.export), stylize the sample photos,
# list the shipped styles and stylize the photos with one of them too.
# Everything lands in checkpoints/quickstart/ and out/quickstart/.
# Knobs for tests/e2e/test_docs_run.py, which runs this script at a tiny size from a temporary copy
# of the repository's layout; a user sets none of them:
#   QUICKSTART_PYTHON       a Python that already has fastmmd installed, used instead of creating .venv
#                           and installing into it
#   QUICKSTART_FASTMMD      the fastmmd command (default .venv/bin/fastmmd, or QUICKSTART_PYTHON -m fastmmd)
#   QUICKSTART_SAMPLE_ARGS  flags appended to the sample data's line (e.g. --photos 4 --size 64)
#   QUICKSTART_FIT_ARGS     flags appended to the `fastmmd fit` line
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${QUICKSTART_PYTHON:-}" ]; then
    PY=$QUICKSTART_PYTHON
    FASTMMD=${QUICKSTART_FASTMMD:-"$PY -m fastmmd"}
else
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-ci.txt -e .
    PY=.venv/bin/python
    FASTMMD=${QUICKSTART_FASTMMD:-.venv/bin/fastmmd}
fi
$PY -m fastmmd.core.samples data/samples ${QUICKSTART_SAMPLE_ARGS:-}
$FASTMMD fit --config configs/quickstart.yaml --overwrite true ${QUICKSTART_FIT_ARGS:-}   # a rerun trains the quickstart afresh
CKPT=checkpoints/quickstart/last.ckpt
$FASTMMD export "$CKPT" --output out/quickstart/style.pt
$FASTMMD export "$CKPT" --format pt2 --output out/quickstart/style.pt2
$FASTMMD export --info out/quickstart/style.pt
$FASTMMD stylize out/quickstart/style.pt data/samples/photos --output-dir out/quickstart/stylized
$FASTMMD models
$FASTMMD stylize the_scream data/samples/photos --output-dir out/quickstart/the_scream   # a shipped style, by name
echo "done: stylized images in out/quickstart/stylized (your network) and out/quickstart/the_scream" \
     "(a shipped style); training run in checkpoints/quickstart"
