#!/usr/bin/env bash
# The test command: installs fastmmd and everything it needs into .venv on a fresh machine
# (torch/torchvision pinned by constraints-ci.txt; Debian's chromium for the browser tests where
# apt-get and root are available), then runs the whole suite (tests/unit, tests/integration,
# tests/e2e), slow tests included (a bare `pytest` skips them, see pyproject.toml; a -m given here
# replaces this one), on two pytest-xdist workers of one torch thread each (FASTMMD_TEST_WORKERS=N
# for another count, 0 for none), printing the 15 slowest.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-ci.txt -e ".[test,onnx,serve]"
# The browser tests of `fastmmd serve` (tests/e2e/test_serve_live.py) drive Debian's chromium through Playwright
# (`playwright install` cannot download browsers here). Best effort: without apt or root they skip,
# with one line saying what is missing (-rs prints it).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "scripts/test.sh: could not install chromium; the browser tests will skip" >&2
fi
exec .venv/bin/python -m pytest -q -rs --durations=15 -n "${FASTMMD_TEST_WORKERS:-2}" --dist worksteal \
    -m "slow or not slow" "$@"
