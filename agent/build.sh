#!/bin/sh
# Builds the static cleanroom-agent binary: agent/build.sh [outdir] (default: <repo>/dist).
# Standard library only, so it builds offline.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../dist"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE=/tmp/cleanroom-go-build-cache
fi
CGO_ENABLED=0 GOFLAGS= GOPROXY=off GO111MODULE=on GOTOOLCHAIN=local \
  go build -trimpath -ldflags "-s -w" -o "$out/cleanroom-agent" .
echo "$out/cleanroom-agent"
