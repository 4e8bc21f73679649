#!/usr/bin/env bash
# make up: the demo's stack in the foreground, for manual use.
#
# A control plane (SQLite at ./.flux/flux.db, kept between runs) and two
# workers (local storage under ./.flux/output, file:// inputs from
# ./.flux/samples) on loopback. The usual ports (8080; 50051/50052 gRPC;
# 9091/9092 worker metrics) when free, other free ports otherwise. Prints the
# URLs, then waits; Ctrl-C stops everything it started. If a component exits
# on its own, the rest is stopped and the script fails with its log.
#
# Environment: FLUX_BIN_DIR (build/bin), FLUX_STATE_DIR (./.flux); LOG_LEVEL
# and PRESETS_FILE are passed on to the programs.
set -uo pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/stack.sh"

STACK_DATABASE="$FLUX_STATE_DIR/flux.db"
# Ctrl-C is quick: running jobs get 2 s, then are cancelled; the control
# plane requeues them at the next start.
STACK_DRAIN_TIMEOUT=2

cleanup() {
  local rc=$?
  trap 'STACK_FORCE=1' INT TERM HUP
  if [ ${#STACK_PIDS[@]} -gt 0 ]; then
    say "Stopping the stack"
    stack_stop || { [ "$rc" -eq 0 ] && rc=1; }
  fi
  [ -n "$STACK_SAMPLE_TMP" ] && rm -f "$STACK_SAMPLE_TMP"
  stack_release
  exit "$rc"
}

main() {
  trap cleanup EXIT
  # Ctrl-C (or SIGTERM) is the normal way out: exit 0 after a clean stop.
  trap 'echo; exit 0' INT TERM HUP

  stack_require_tools ffmpeg curl jq python3 flock setsid || exit 1
  stack_init up || exit 1
  local sample="$SAMPLES_DIR/sample.mp4"
  if [ ! -s "$sample" ]; then
    say "Generating a sample clip (6 s, 1280x720, 440 Hz tone)"
    stack_make_sample "$sample" || exit 1
  fi

  say "Starting the control plane and two workers"
  if ! stack_start fixed; then
    echo "the stack did not start (logs in $(pretty_path "$STACK_LOG_DIR"))" >&2
    exit 1
  fi

  local fluxctl="$FLUX_BIN_DIR/fluxctl"
  [ -x "$fluxctl" ] || fluxctl="fluxctl"
  cat <<EOF

  API            $CP_URL/api/v1
  API docs       $CP_URL/docs   (OpenAPI: $CP_URL/openapi.json)
  metrics        $CP_URL/metrics
  worker 1       gRPC 127.0.0.1:${WORKER_GRPC_PORTS[0]}, metrics http://127.0.0.1:${WORKER_METRICS_PORTS[0]}/metrics
  worker 2       gRPC 127.0.0.1:${WORKER_GRPC_PORTS[1]}, metrics http://127.0.0.1:${WORKER_METRICS_PORTS[1]}/metrics
  inputs         file://$SAMPLES_DIR/...
  outputs        $OUTPUT_DIR/
  database       $STACK_DATABASE
  logs           $STACK_LOG_DIR/

  Try it (no API key needed: ENV=development):
    export FLUX_URL=$CP_URL
    $(pretty_path "$fluxctl") submit --input file://$sample --preset 720p_h264 --output manual/sample.mp4 --wait

  Ctrl-C stops everything.
EOF

  # Watch over the components; one that exits on its own ends the session.
  local dead
  while :; do
    dead="$(stack_dead_component)"
    if [ -n "$dead" ]; then
      warn "$dead exited on its own"
      stack_show_log "$dead"
      exit 1
    fi
    sleep 1
  done
}

main "$@"
