#!/usr/bin/env bash
# The main job on a fresh machine: set up, start the daemon (if none is running), build the default image,
# and run a command in a sandbox. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cli=bin/cleanroom
if ! $cli version 2>/dev/null | grep -q '^server [0-9]'; then
  mkdir -p /var/log
  nohup $cli serve >>/var/log/cleanroom.log 2>&1 &
  echo "started cleanroom serve (pid $!, log /var/log/cleanroom.log)"
  for _ in $(seq 1 100); do $cli version 2>/dev/null | grep -q '^server [0-9]' && break; sleep 0.1; done
fi
$cli system warmup
$cli exec -- echo hello
