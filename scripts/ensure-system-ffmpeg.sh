#!/usr/bin/env bash
# Test-only: Debian's `ffmpeg` package, for `make test-system-ffmpeg` (the whole-recording
# tests again with a distribution's ffmpeg instead of the bundled one). Installs it when
# missing and we are root on Debian; otherwise says exactly what to install. `make setup`
# and Learncast itself never need it: they run the ffmpeg bundled in imageio-ffmpeg.
set -euo pipefail
FFMPEG="${SYSTEM_FFMPEG:-/usr/bin/ffmpeg}"
[ -x "$FFMPEG" ] && exit 0
if [ "$FFMPEG" = /usr/bin/ffmpeg ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-ffmpeg: installing ffmpeg (test-only) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
    exit 0
fi
echo "ensure-system-ffmpeg: no ffmpeg at $FFMPEG for the system-ffmpeg tests" >&2
echo "  install Debian's with:  sudo apt-get install -y ffmpeg" >&2
echo "  (or run make test-system-ffmpeg SYSTEM_FFMPEG=/path/to/ffmpeg), then run it again" >&2
exit 1
