#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine:
# a virtualenv in .venv, the project with its [test] extra, the services, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/services.sh
exec .venv/bin/python -m pytest "$@"
