#!/usr/bin/env bash
# Install the broker servers the test suite starts (RabbitMQ and Redis) when missing.
# The tests start their own instances on free loopback ports; nothing is started here,
# and the packages' own services are kept from starting during the install.
set -euo pipefail
have() { command -v "$1" >/dev/null || [ -x "/usr/lib/rabbitmq/bin/$1" ]; }
if have rabbitmq-server && have redis-server; then
  exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "error: rabbitmq-server and redis-server are needed by the tests;" \
    "install them (Debian: apt-get install -y rabbitmq-server redis-server)" >&2
  exit 1
fi
echo "installing rabbitmq-server and redis-server (the tests start their own on loopback)"
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then  # do not let the packages start system services
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  guard=/usr/sbin/policy-rc.d
fi
trap '[ -n "$guard" ] && rm -f "$guard"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server redis-server >/dev/null
