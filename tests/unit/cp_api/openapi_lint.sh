#!/usr/bin/env bash
# Lints an OpenAPI document with Redocly CLI and fails on any error or warning.
# Usage: openapi_lint.sh <path to the redocly binary> <openapi.json>
# The configuration (recommended ruleset, see redocly.yaml) sits next to this
# script. Runs offline: telemetry and update checks are turned off.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <redocly binary> <openapi.json>" >&2
  exit 2
fi
redocly=$1
document=$2
config="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/redocly.yaml"

[[ -x "$redocly" ]] || { echo "redocly binary not found or not executable: $redocly" >&2; exit 2; }
[[ -s "$document" ]] || { echo "OpenAPI document missing or empty: $document" >&2; exit 2; }

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
# --max-problems keeps the whole report; stylish output is one line per problem.
output=$("$redocly" lint "$document" --config "$config" --format stylish --max-problems 1000 2>&1) && status=0 || status=$?
echo "$output"
if [[ $status -ne 0 ]]; then
  echo "openapi_lint: redocly lint failed (exit $status)" >&2
  exit 1
fi
# Redocly exits 0 on warnings; this product's document must be warning-free too.
if grep -Eq '^[[:space:]]+[0-9]+:[0-9]+[[:space:]]+warning' <<<"$output"; then
  echo "openapi_lint: redocly lint reported warnings" >&2
  exit 1
fi
echo "openapi_lint: OK"
