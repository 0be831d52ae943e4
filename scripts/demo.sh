#!/usr/bin/env bash
# Set up and run the demo on a fresh machine: a virtualenv in .venv, the
# project, then `promoflow demo` (embedded SQLite in ./promoflow-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e .
exec .venv/bin/promoflow demo "$@"
