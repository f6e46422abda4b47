#!/usr/bin/env bash
# The main job on the embedded default, on a fresh CPU machine, offline: install, make the sample
# data (procedural photos + a procedural painting), train a small network for a few minutes
# (configs/quickstart.yaml), export it (TorchScript and torch.export), stylize the sample photos,
# list the shipped styles and stylize the photos with one of them too.
# Everything lands in checkpoints/quickstart/ and out/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-ci.txt -e .
FASTMMD=.venv/bin/fastmmd
.venv/bin/python -m fastmmd.core.samples data/samples
$FASTMMD fit --config configs/quickstart.yaml --overwrite true   # a rerun trains the quickstart afresh
CKPT=checkpoints/quickstart/last.ckpt
$FASTMMD export "$CKPT" --output out/quickstart/style.pt
$FASTMMD export "$CKPT" --format pt2 --output out/quickstart/style.pt2
$FASTMMD export --info out/quickstart/style.pt
$FASTMMD stylize out/quickstart/style.pt data/samples/photos --output-dir out/quickstart/stylized
$FASTMMD models
$FASTMMD stylize the_scream data/samples/photos --output-dir out/quickstart/the_scream   # a shipped style, by name
echo "done: stylized images in out/quickstart/stylized (your network) and out/quickstart/the_scream" \
     "(a shipped style); training run in checkpoints/quickstart"
