#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for Cleanroom: system packages, npm packages, the agent and CLI build.
# Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(runc runsc nftables iproute2 golang-go debootstrap git docker-registry skopeo attr busybox-static ca-certificates curl openssl systemd)  # systemd: only for systemd-analyze, which checks the daemon unit in tests; it need not run
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm 11 asks before running install scripts; node (the pinned runtime), esbuild and buf are approved in package.json
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
