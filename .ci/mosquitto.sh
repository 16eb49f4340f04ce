#!/bin/sh
# Installs Debian's mosquitto for the interop test crates/civiclake-mqtt/tests/it/mosquitto.rs,
# which starts its own broker on a loopback port (the test skips itself without mosquitto).
# The packaged service is stopped: the test needs the binary, not a broker on port 1883.
set -eu
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
$SUDO service mosquitto stop >/dev/null 2>&1 || true
$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
echo "mosquitto installed: $(/usr/sbin/mosquitto -h 2>&1 | head -n 1)"
