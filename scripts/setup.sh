#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with everything in requirements.txt.
# With --test it also makes sure Debian's chromium is there for the browser tests, and puts the
# third-party client libraries (requirements-clients.txt) in .venv-clients.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
want=$(cat requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements (first run takes a few minutes)"
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > .venv/.requirements.sha
fi

# Third-party client libraries for tests/clients: their own venv, their pins clash with ours.
if [ "${1:-}" = "--test" ]; then
  want_clients=$(sha256sum requirements-clients.txt | cut -d' ' -f1)
  if [ ! -x .venv-clients/bin/python ]; then
    "$PYTHON" -m venv .venv-clients
  fi
  if [ "$(cat .venv-clients/.requirements.sha 2>/dev/null)" != "$want_clients" ]; then
    echo "setup: installing the client libraries into .venv-clients"
    .venv-clients/bin/pip install -q -r requirements-clients.txt
    echo "$want_clients" > .venv-clients/.requirements.sha
  fi
fi

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
