#!/bin/sh
# Builds the static cleanroom-agent binary: agent/build.sh [outdir] (default: <repo>/dist).
# agent/build.sh --test runs the agent's vet and tests instead, with the same offline toolchain settings.
# Standard library only, so it builds offline.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE=/tmp/cleanroom-go-build-cache
fi
export CGO_ENABLED=0 GOFLAGS= GOPROXY=off GO111MODULE=on GOTOOLCHAIN=local
if [ "${1:-}" = "--test" ]; then
  cd "$here"
  go vet ./...
  exec go test ./...
fi
out=${1:-"$here/../dist"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
go build -trimpath -ldflags "-s -w" -o "$out/cleanroom-agent" .
echo "$out/cleanroom-agent"
