#!/usr/bin/env bash
# Install foxactors into .venv and run its example: a supervision tree on the
# embedded runtime whose workers crash and recover while every order gets paid.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check .
exec .venv/bin/foxactors run examples.supervision_tree:app "$@"
