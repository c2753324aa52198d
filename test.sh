#!/usr/bin/env bash
# Set up (first run only, chromium included) and run the whole test suite, browser tests too.
# Extra arguments go to pytest, e.g. ./test.sh -k playground
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --test
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
