#!/usr/bin/env bash
# Set up (first run only) and start the console + API on the offline default model.
# Any app.py option may follow, e.g. ./run.sh --port 8000 --model models/mini-v2
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/python app.py "$@"
