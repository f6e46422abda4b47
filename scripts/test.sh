#!/usr/bin/env bash
# The test command: installs fastmmd and everything it needs into .venv on a fresh machine
# (torch/torchvision pinned by constraints-ci.txt), then runs the whole suite, slow tests included
# (a bare `pytest` skips them, see pyproject.toml; a -m given here replaces this one).
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-ci.txt -e ".[test,onnx]"
exec .venv/bin/python -m pytest -q -m "slow or not slow" "$@"
