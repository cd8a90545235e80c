#!/usr/bin/env bash
# Fails when src/api/gen is not what `buf generate` makes from src/api/proto (someone edited a .proto and forgot).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx buf lint
npx buf generate --output "$out"
if ! diff -r "$out/src/api/gen" src/api/gen >/dev/null; then
  echo "src/api/gen is stale: run \`npm run generate\` and commit the result" >&2
  diff -r "$out/src/api/gen" src/api/gen | head -20 >&2
  exit 1
fi
