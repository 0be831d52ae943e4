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
# Two workers (the machine has two cores): each test has its own SQLite file
# or PostgreSQL schema and servers bind port 0, so tests are independent.
exec .venv/bin/python -m pytest -n "${PROMOFLOW_TEST_WORKERS:-2}" "$@"
