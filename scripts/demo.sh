#!/usr/bin/env bash
# Install foxactors into .venv and run its main example: an email-notification
# pipeline on the embedded memory backend, with retries and dead letters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check .
exec .venv/bin/foxactors run examples.email_pipeline:app "$@"
