#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 machine, then run it all.
# Usage: scripts/test.sh [pytest arguments]      (as root, or with sudo for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Real peers the tests talk to: nginx (basic-auth oracle, benchmark), pebble (ACME),
# chromium (browser login), arping/tcpdump/iproute2 (ARP across network namespaces).
packages=(nginx-light wrk pebble arping tcpdump iproute2 apache2-utils openssl
          chromium chromium-driver libcrypt-dev whois)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install -q -e '.[test]'
if [ -f tests/auth/idp/package-lock.json ]; then
  (cd tests/auth/idp && npm ci --silent --no-audit --no-fund)
fi

python3 -m ruff check pyingress
python3 -m mypy pyingress
exec python3 -m pytest "$@"
