#!/usr/bin/env bash
# Test-only servers for the distributed tests (tests/queue, the PostgreSQL state tests):
# Debian's redis-server and postgresql. The tests start their own instances (PostgreSQL as an
# unprivileged user when run as root) on free ports; nothing here starts a service. Installs
# them when missing and we are root on Debian; otherwise says exactly what to install.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-servers: installing ${missing[*]} (test-only) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: do not start the packaged services; the tests run their own
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "ensure-servers: the distributed tests need: ${missing[*]}" >&2
echo "  install them with:  sudo apt-get install -y ${missing[*]}" >&2
exit 1
