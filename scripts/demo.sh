#!/usr/bin/env bash
# Install foxactors (with its jobs extra) into .venv and run its two main examples on
# the embedded memory backend: an email-notification pipeline with retries and dead
# letters, then an email queue of jobs (priorities, an idempotency key, a cancel, a
# delayed reminder, progress, a rejected address, a flaky gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check ".[jobs]"
echo "== examples/email_pipeline.py: messages through a supervised pipeline =="
.venv/bin/foxactors run examples.email_pipeline:app "$@"
echo
echo "== examples/email_queue.py: emails as jobs, each with a record you can read back =="
exec .venv/bin/python examples/email_queue.py
