#!/usr/bin/env bash
# Set up (first run only, chromium included), lint and type-check (ruff, mypy: configured in
# pyproject.toml), then run the whole test suite, browser tests too. The suite runs even when a
# check fails; the exit status is non-zero if anything failed.
# Extra arguments go to pytest, e.g. ./test.sh -k playground
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --test
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
checks=0
echo "ruff:" && .venv/bin/ruff check . || checks=1
echo "mypy:" && .venv/bin/mypy || checks=1
status=0
.venv/bin/python -m pytest -q --durations=15 "$@" || status=$?
if [ "$status" -eq 0 ] && [ "$checks" -ne 0 ]; then
  echo "test.sh: tests passed, but ruff or mypy found problems (above)"
  status=1
fi
exit "$status"
