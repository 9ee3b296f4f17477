#!/usr/bin/env bash
# Test-only system packages for the review page's browser tests: Debian's chromium (driven by
# Playwright with executable_path, never `playwright install`) and npm (axe-core is fetched by
# the test fixture into tests/.node/). Installs them when missing and we are root on Debian;
# otherwise says exactly what to install. `make setup` never needs any of this.
set -euo pipefail
CHROMIUM="${LEARNCAST_CHROMIUM:-/usr/bin/chromium}"
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: installing ${missing[*]} (test-only) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "ensure-chromium: the browser tests need: ${missing[*]}" >&2
echo "  install them with:  sudo apt-get install -y ${missing[*]}" >&2
echo "  (or point LEARNCAST_CHROMIUM at a Chromium binary), then run make test again" >&2
exit 1
