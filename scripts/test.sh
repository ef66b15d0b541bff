#!/usr/bin/env bash
# The whole check, as CI runs it: lint, types, docs build, and the test suite on
# asyncio and trio, including the tests against real RabbitMQ and Redis servers (installed
# here when missing, started by the tests). Extra arguments go to pytest (e.g. -k rabbitmq).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/brokers.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check "tox>=4.2"
.venv/bin/tox run -e lint,types,docs
exec .venv/bin/tox run -e tests -- "$@"
