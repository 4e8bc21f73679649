#!/usr/bin/env bash
# make demo: the service's main job on embedded defaults, end to end.
#
# Generates a sample clip (./.flux/samples) if there is none, starts a control
# plane (SQLite under ./.flux) and two workers (local storage under
# ./.flux/output) on free loopback ports, submits a 720p_h264 job and an
# hls_720p_abr job with fluxctl, watches them with live progress bars, prints
# where each output is with a one-line ffprobe summary, then stops everything
# it started. Exits 0 when both jobs completed and the stack stopped cleanly;
# otherwise non-zero with the reason and the tail of the relevant log.
# Nothing it started survives it, Ctrl-C included.
#
# Environment: FLUX_BIN_DIR (build/bin), FLUX_STATE_DIR (./.flux),
# FLUX_DEMO_JOB_TIMEOUT (the control plane's JOB_TIMEOUT here, 600 s).
set -uo pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib/stack.sh"

STACK_DATABASE="$FLUX_STATE_DIR/demo.db"
STACK_DRAIN_TIMEOUT=2  # on Ctrl-C, workers cancel what runs after 2 s
JOB_TIMEOUT="${FLUX_DEMO_JOB_TIMEOUT:-600}"
# A job that hangs fails with code "timeout" instead of holding the demo.
STACK_CP_ENV=("JOB_TIMEOUT=$JOB_TIMEOUT")
SAMPLE="$FLUX_STATE_DIR/samples/sample.mp4"
FLUXCTL=""
SUBMITTED=()        # job ids, for cancelling them if the demo is interrupted
INTERRUPTED=0

die() {
  printf '\n%sdemo failed:%s %s\n' "$_c_red" "$_c_off" "$*" >&2
  exit 1
}

on_signal() {
  INTERRUPTED=1
  printf '\n%s: stopping the demo\n' "$1" >&2
  exit "$2"
}

cleanup() {
  local rc=$?
  # A second Ctrl-C during clean-up skips the graceful waits; it never
  # abandons the clean-up itself.
  trap 'STACK_FORCE=1' INT TERM HUP
  if [ "$INTERRUPTED" = 1 ] && [ -n "$CP_URL" ] && [ ${#SUBMITTED[@]} -gt 0 ]; then
    local id
    for id in "${SUBMITTED[@]}"; do
      timeout 5 "$FLUXCTL" --url "$CP_URL" cancel "$id" >/dev/null 2>&1 || true
    done
  fi
  if [ ${#STACK_PIDS[@]} -gt 0 ]; then
    say "Stopping the stack"
    stack_stop || { [ "$rc" -eq 0 ] && rc=1; }
  fi
  [ -n "$STACK_SAMPLE_TMP" ] && rm -f "$STACK_SAMPLE_TMP"
  stack_release
  exit "$rc"
}

# fluxctl from this build (FLUX_BIN_DIR), else from PATH.
find_fluxctl() {
  if [ -x "$FLUX_BIN_DIR/fluxctl" ]; then
    FLUXCTL="$FLUX_BIN_DIR/fluxctl"
  elif command -v fluxctl >/dev/null 2>&1; then
    FLUXCTL="$(command -v fluxctl)"
  else
    die "fluxctl not found in $(pretty_path "$FLUX_BIN_DIR") or on PATH (run 'make build')"
  fi
}

fx() { "$FLUXCTL" --url "$CP_URL" "$@"; }

# The component (worker-N) that ran a job, from its worker_id.
component_of_worker() {
  case "$1" in
    demo-worker-*) printf 'worker-%s' "${1#demo-worker-}" ;;
    *) printf 'controlplane' ;;
  esac
}

# Names a component that died, with its log tail.
explain_dead_component() {
  local dead
  dead="$(stack_dead_component)"
  if [ -n "$dead" ]; then
    echo "$dead is no longer running" >&2
    stack_show_log "$dead"
  fi
}

# submit VAR PRESET OUTPUT_PATH: submits a job; VAR gets its id.
submit() {
  local preset="$2" path="$3" answer id rc=0
  answer="$(fx --json submit --input "file://$SAMPLE" --preset "$preset" \
              --storage local --output "$path")" || rc=$?
  if [ "$rc" -ne 0 ]; then
    explain_dead_component
    die "fluxctl submit --preset $preset failed (exit $rc): $answer"
  fi
  id="$(jq -r '.job_id // empty' <<<"$answer" 2>/dev/null)"
  [ -n "$id" ] || die "fluxctl submit answered without a job id: $answer"
  SUBMITTED+=("$id")
  printf -v "$1" '%s' "$id"
}

# watch_job JOB_ID PRESET: the live progress bar until the job ends; fails the
# demo with the job's error when it did not complete.
watch_job() {
  local id="$1" preset="$2" rc=0
  say "Job $id ($preset)"
  fx watch "$id" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  [ "$rc" -eq 130 ] && { INTERRUPTED=1; exit 130; }  # fluxctl was interrupted
  local doc status error code worker
  doc="$(fx --json get "$id" 2>/dev/null)"
  status="$(jq -r '.status // "unknown"' <<<"$doc" 2>/dev/null)"
  error="$(jq -r '.error // empty' <<<"$doc" 2>/dev/null)"
  code="$(jq -r '.error_code // empty' <<<"$doc" 2>/dev/null)"
  worker="$(jq -r '.worker_id // empty' <<<"$doc" 2>/dev/null)"
  explain_dead_component
  if [ -n "$worker" ]; then stack_show_log "$(component_of_worker "$worker")"; else stack_show_log controlplane; fi
  die "job $id ($preset) ended '${status:-unknown}'${code:+ [$code]}${error:+: $error} (fluxctl exit $rc)"
}

# The local path behind a file:// output URL (percent-decoded).
url_path() {
  local url="$1" path
  [[ "$url" == file://* ]] || return 1
  path="${url#file://}"
  printf '%b' "${path//%/\\x}"
}

human_bytes() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1" 2>/dev/null || printf '%s B' "$1"; }

# probe_line FILE SIZE_BYTES: "h264 1280x720 30fps, aac 48kHz 2ch, 6.02 s, 2.0MiB".
probe_line() {
  local file="$1" size="$2" json media duration
  json="$(ffprobe -v error -show_entries \
            format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate,sample_rate,channels \
            -of json "$file" 2>&1)" || { printf 'ffprobe failed: %s' "$json"; return 1; }
  media="$(jq -r '
    def fps: (split("/") | map(tonumber)) as $f
      | if ($f[1] // 0) > 0 then " \($f[0] / $f[1] | round)fps" else "" end;
    [ (.streams[] | select(.codec_type == "video") | "\(.codec_name) \(.width)x\(.height)\(.avg_frame_rate | fps)"),
      (.streams[] | select(.codec_type == "audio") | "\(.codec_name) \((.sample_rate | tonumber) / 1000)kHz \(.channels)ch") ]
    | join(", ")' <<<"$json")" || return 1
  duration="$(jq -r '.format.duration // "0"' <<<"$json")"
  printf '%s, %.2f s, %s' "${media:-no streams}" "$duration" "$(human_bytes "$size")"
}

# Sum of the sizes of the files a media playlist lists, the playlist included.
playlist_bytes() {
  local playlist="$1" dir total line
  dir="$(dirname "$playlist")"
  total="$(stat -c %s "$playlist")"
  while IFS= read -r line; do
    line="${line%$'\r'}"
    [ -z "$line" ] || [[ "$line" == \#* ]] && continue
    [ -f "$dir/$line" ] && total=$((total + $(stat -c %s "$dir/$line")))
  done <"$playlist"
  printf '%s' "$total"
}

# summarize JOB_ID: where the output is and what ffprobe sees in it.
summarize() {
  local id="$1" doc preset url path worker seconds
  doc="$(fx --json get "$id")" || die "fluxctl get $id failed"
  preset="$(jq -r .preset <<<"$doc")"
  url="$(jq -r '.output_url // empty' <<<"$doc")"
  worker="$(jq -r '.worker_id // "?"' <<<"$doc")"
  seconds="$(jq -r '[.phase_durations // {} | .[]] | add // 0 | . * 10 | round / 10' <<<"$doc")"
  path="$(url_path "$url")" || die "job $id has no local output URL (output_url: '${url}')"
  [ -f "$path" ] || die "job $id reports $url but $(pretty_path "$path") does not exist"
  printf '\n%s%s%s  (job %s, %s, %ss)\n' "$_c_bold" "$preset" "$_c_off" "$id" "$worker" "$seconds"
  if [[ "$path" == *.m3u8 ]]; then
    printf '  master   %s\n' "$(pretty_path "$path")"
    local dir line attrs="" variant summary
    dir="$(dirname "$path")"
    while IFS= read -r line; do
      line="${line%$'\r'}"
      if [[ "$line" == '#EXT-X-STREAM-INF:'* ]]; then
        attrs="$line"
      elif [ -n "$attrs" ] && [ -n "$line" ] && [[ "$line" != \#* ]]; then
        variant="$dir/$line"
        [ -f "$variant" ] || die "variant playlist $(pretty_path "$variant") listed in the master is missing"
        local bandwidth
        bandwidth="$(grep -o 'BANDWIDTH=[0-9]*' <<<"$attrs" | head -n1 | cut -d= -f2)"
        summary="$(probe_line "$variant" "$(playlist_bytes "$variant")")" || die "ffprobe $variant: $summary"
        printf '  variant  %s: %s, %s kb/s\n' "$(pretty_path "$variant")" "$summary" "$((bandwidth / 1000))"
        attrs=""
      fi
    done <"$path"
  else
    local summary
    summary="$(probe_line "$path" "$(stat -c %s "$path")")" || die "ffprobe $path: $summary"
    printf '  file     %s: %s\n' "$(pretty_path "$path")" "$summary"
  fi
}

main() {
  trap cleanup EXIT
  trap 'on_signal interrupted 130' INT
  trap 'on_signal terminated 143' TERM
  trap 'on_signal "hung up" 129' HUP

  stack_require_tools ffmpeg ffprobe curl jq python3 flock setsid numfmt timeout || exit 1
  stack_init demo || exit 1
  find_fluxctl
  # Every demo starts from an empty database and output folder of its own.
  rm -f "$STACK_DATABASE" "$STACK_DATABASE-wal" "$STACK_DATABASE-shm"
  rm -rf "$OUTPUT_DIR/demo"

  if [ ! -s "$SAMPLE" ]; then
    say "Generating a sample clip (6 s, 1280x720, 440 Hz tone)"
    stack_make_sample "$SAMPLE" || die "could not generate $(pretty_path "$SAMPLE")"
  fi
  note "input: $(pretty_path "$SAMPLE")"

  say "Starting the control plane and two workers"
  stack_start free || die "the stack did not start (logs in $(pretty_path "$STACK_LOG_DIR"))"
  note "API      $CP_URL   (docs: $CP_URL/docs)"
  note "workers  127.0.0.1:${WORKER_GRPC_PORTS[0]}, 127.0.0.1:${WORKER_GRPC_PORTS[1]} (gRPC)"
  note "logs     $(pretty_path "$STACK_LOG_DIR")/"

  say "Submitting two jobs with $(pretty_path "$FLUXCTL")"
  local mp4_job hls_job
  submit mp4_job 720p_h264 demo/sample_720p.mp4
  submit hls_job hls_720p_abr demo/sample_hls
  note "720p_h264     → $mp4_job"
  note "hls_720p_abr  → $hls_job"

  watch_job "$mp4_job" 720p_h264
  watch_job "$hls_job" hls_720p_abr

  say "Outputs"
  summarize "$mp4_job"
  summarize "$hls_job"
  echo

  say "Stopping the stack"
  stack_stop || die "a component did not stop cleanly (see above)"
  printf '\n%sDemo complete:%s both jobs finished; outputs under %s\n' \
    "$_c_green" "$_c_off" "$(pretty_path "$OUTPUT_DIR/demo")/"
}

main "$@"
