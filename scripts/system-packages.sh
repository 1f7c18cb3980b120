#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the test suite needs, only those missing; idempotent.
#   portaudio19-dev     PortAudio headers, to build PyAudio (the `mic` extra)
#   libasound2-plugins  ALSA plugins; alsa-utils: arecord/aplay, to check the fake capture device by hand
# Uses sudo when not root. Usage: scripts/system-packages.sh
set -euo pipefail

packages=(portaudio19-dev alsa-utils libasound2-plugins)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
# apt-get's progress goes to a log, not into the test output; the log is shown only if it fails.
log="$(mktemp -t cartesia-sync-apt.XXXXXX.log)"
echo "installing Debian packages: ${missing[*]} (apt-get log: $log)" >&2
if ! { "${SUDO[@]}" apt-get update -q && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "apt-get failed installing: ${missing[*]} (full log: $log)" >&2
    exit 1
fi
