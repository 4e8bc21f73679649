# shellcheck shell=bash
# shellcheck disable=SC2034  # the globals here are read by the scripts that source this file
# A local flux-encoder stack for scripts/demo.sh and scripts/up.sh: one control
# plane and two workers on loopback, local storage, state under ./.flux/.
#
# Everything started here is remembered by PID and stopped by PID (SIGTERM,
# wait, SIGKILL for whatever is left, including a worker's ffmpeg children);
# nothing is ever looked up or killed by name.
#
# Settings (environment):
#   FLUX_BIN_DIR    where flux-controlplane / flux-worker / fluxctl are (build/bin)
#   FLUX_STATE_DIR  state root: samples, output, logs, databases, work dirs (./.flux)

FLUX_ROOT="${FLUX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
FLUX_BIN_DIR="$(cd "$FLUX_ROOT" && realpath -m "${FLUX_BIN_DIR:-build/bin}")"
FLUX_STATE_DIR="$(cd "$FLUX_ROOT" && realpath -m "${FLUX_STATE_DIR:-.flux}")"

# The stack is on loopback: never send its requests (curl, fluxctl) through a
# proxy from the caller's environment.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

STACK_MODE=""
STACK_PIDS=()      # started processes, in start order
STACK_NAMES=()     # their names (controlplane, worker-1, ...)
STACK_LOGS=()      # their log files
STACK_PORTS=()     # every port handed out, so none is handed out twice
STACK_FORCE=0      # set by a second Ctrl-C: skip the graceful wait
STACK_LOCK_FD=""
STACK_SAMPLE_TMP=""  # a sample clip being written, removed if interrupted
STACK_CP_ENV=()      # extra VAR=VALUE settings for the control plane

# Ports and URLs, set by stack_start.
CP_PORT="" CP_URL=""
WORKER_GRPC_PORTS=() WORKER_METRICS_PORTS=()

if [ -t 1 ]; then
  _c_dim=$'\e[2m' _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_off=$'\e[0m'
else
  _c_dim="" _c_bold="" _c_red="" _c_green="" _c_off=""
fi

say() { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*"; }
note() { printf '    %s%s%s\n' "$_c_dim" "$*" "$_c_off"; }
ok() { printf '%s  ✓%s %s\n' "$_c_green" "$_c_off" "$*"; }
warn() { printf '%swarning:%s %s\n' "$_c_red" "$_c_off" "$*" >&2; }

# A path as the user would type it from the repository root.
pretty_path() {
  local p="$1"
  case "$p" in
    "$FLUX_ROOT"/*) printf '%s' "./${p#"$FLUX_ROOT"/}" ;;
    *) printf '%s' "$p" ;;
  esac
}

# stack_require_tools TOOL...: fails with the list of what is missing.
stack_require_tools() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing tools: ${missing[*]} (run scripts/install-deps.sh)" >&2
    return 1
  fi
}

# stack_init MODE: the directories of one mode (demo, up) and a lock so that
# two stacks of the same mode never share a database or work dirs.
stack_init() {
  STACK_MODE="$1"
  STACK_LOG_DIR="$FLUX_STATE_DIR/logs/$STACK_MODE"
  STACK_RUN_DIR="$FLUX_STATE_DIR/run"
  SAMPLES_DIR="$FLUX_STATE_DIR/samples"
  OUTPUT_DIR="$FLUX_STATE_DIR/output"
  mkdir -p "$STACK_LOG_DIR" "$STACK_RUN_DIR" "$SAMPLES_DIR" "$OUTPUT_DIR" || return 1
  local lock="$STACK_RUN_DIR/$STACK_MODE.lock"
  exec {STACK_LOCK_FD}>"$lock" || return 1
  if ! flock -n "$STACK_LOCK_FD"; then
    echo "another '$STACK_MODE' stack is running on $(pretty_path "$FLUX_STATE_DIR")" \
         "(PIDs: $(tr '\n' ' ' <"$STACK_RUN_DIR/$STACK_MODE.pids" 2>/dev/null))" >&2
    exec {STACK_LOCK_FD}>&-
    STACK_LOCK_FD=""
    return 1
  fi
  : >"$STACK_RUN_DIR/$STACK_MODE.pids"
}

# stack_release: forgets the run files of this mode (after stack_stop).
stack_release() {
  [ -n "$STACK_LOCK_FD" ] || return 0
  rm -f "$STACK_RUN_DIR/$STACK_MODE.pids" "$STACK_RUN_DIR/$STACK_MODE.lock"
  exec {STACK_LOCK_FD}>&-
  STACK_LOCK_FD=""
  rmdir "$STACK_RUN_DIR" 2>/dev/null || true
}

# stack_free_port VAR [PREFERRED]: sets VAR to a TCP port nothing listens on
# (the preferred one when it is free), never one handed out before in this run.
stack_free_port() {
  local port
  port="$(python3 - "${2:-0}" "${STACK_PORTS[@]}" <<'EOF'
import socket, sys
preferred = int(sys.argv[1])
taken = {int(p) for p in sys.argv[2:]}
def bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return 0
        return s.getsockname()[1]
if preferred and preferred not in taken and bindable(preferred):
    print(preferred)
    sys.exit(0)
for _ in range(100):
    port = bindable(0)
    if port and port not in taken:
        print(port)
        sys.exit(0)
sys.exit("no free TCP port found")
EOF
)" || return 1
  STACK_PORTS+=("$port")
  printf -v "$1" '%s' "$port"
}

# The environment every started program gets: a clean one, so that a stray
# PORT or API_KEYS in the caller's shell cannot change the stack, plus the
# few settings a user may want to pass on.
_stack_base_env() {
  local v
  printf '%s\0' "PATH=$PATH" "HOME=${HOME:-/}"
  for v in LANG LC_ALL TZ TMPDIR LOG_LEVEL PRESETS_FILE FFMPEG_PATH FFPROBE_PATH VALIDATION_LEVEL \
           ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS; do
    [ -n "${!v:-}" ] && printf '%s\0' "$v=${!v}"
  done
}

# stack_spawn NAME BINARY VAR=VALUE...: starts BINARY in the background with
# that environment, output to $STACK_LOG_DIR/NAME.log. (setsid does not fork
# here: a background job of a non-interactive shell is no group leader, so $!
# is the program's own PID.)
stack_spawn() {
  local name="$1" binary="$2"
  shift 2
  local log="$STACK_LOG_DIR/$name.log" env_args=()
  mapfile -d '' env_args < <(_stack_base_env)
  # A session of its own: a Ctrl-C on the terminal reaches only the script,
  # which then stops the stack in order (control plane first).
  setsid env -i "${env_args[@]}" "$@" "$binary" </dev/null >"$log" 2>&1 &
  local pid=$!
  STACK_PIDS+=("$pid")
  STACK_NAMES+=("$name")
  STACK_LOGS+=("$log")
  echo "$pid $name" >>"$STACK_RUN_DIR/$STACK_MODE.pids"
}

# _stack_state PID: the /proc state letter ("" when the process is gone).
_stack_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  printf '%s' "${stat%% *}"
}

# stack_alive PID: running (not gone, not a zombie waiting to be reaped).
stack_alive() {
  local state
  state="$(_stack_state "$1")"
  [ -n "$state" ] && [ "$state" != Z ]
}

# stack_dead_component: prints the name of a started component that is no
# longer running (empty when all run).
stack_dead_component() {
  local i
  for i in "${!STACK_PIDS[@]}"; do
    if ! stack_alive "${STACK_PIDS[$i]}"; then
      printf '%s' "${STACK_NAMES[$i]}"
      return 0
    fi
  done
}

# stack_log_of NAME: the log file of a component.
stack_log_of() {
  local i
  for i in "${!STACK_NAMES[@]}"; do
    [ "${STACK_NAMES[$i]}" = "$1" ] && printf '%s' "${STACK_LOGS[$i]}" && return 0
  done
  return 1
}

# stack_show_log NAME [LINES]: the tail of a component's log, on stderr.
stack_show_log() {
  local log
  log="$(stack_log_of "$1")" || return 0
  [ -s "$log" ] || { echo "($1 wrote nothing to $(pretty_path "$log"))" >&2; return 0; }
  echo "---- last ${2:-30} lines of $(pretty_path "$log") ----" >&2
  tail -n "${2:-30}" "$log" >&2
  echo "----" >&2
}

# stack_wait_http NAME URL TIMEOUT: waits for URL to answer 200 while the
# component NAME runs.
stack_wait_http() {
  local name="$1" url="$2" timeout="$3" pid="" i
  for i in "${!STACK_NAMES[@]}"; do [ "${STACK_NAMES[$i]}" = "$name" ] && pid="${STACK_PIDS[$i]}"; done
  local deadline=$((SECONDS + timeout))
  while [ $SECONDS -lt $deadline ]; do
    if [ -n "$pid" ] && ! stack_alive "$pid"; then
      echo "$name exited during start-up" >&2
      stack_show_log "$name"
      return 1
    fi
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$name did not answer $url within ${timeout}s" >&2
  stack_show_log "$name"
  return 1
}

# stack_start PORT_PREFERENCE: starts two workers and a control plane and
# waits until the control plane is ready and sees both workers up.
# PORT_PREFERENCE "fixed" tries the usual ports first (8080, 50051/50052,
# 9091/9092), "free" takes any free ports.
stack_start() {
  local preference="$1" n
  local bin_cp="$FLUX_BIN_DIR/flux-controlplane" bin_worker="$FLUX_BIN_DIR/flux-worker"
  for n in "$bin_cp" "$bin_worker"; do
    [ -x "$n" ] || { echo "$n not found (run 'make build' or set FLUX_BIN_DIR)" >&2; return 1; }
  done
  local want_cp=0 want_grpc=(0 0) want_metrics=(0 0)
  if [ "$preference" = fixed ]; then want_cp=8080 want_grpc=(50051 50052) want_metrics=(9091 9092); fi

  local drain="${STACK_DRAIN_TIMEOUT:-2}" nodes=() i
  for i in 0 1; do
    n=$((i + 1))
    stack_free_port "WORKER_GRPC_PORTS[$i]" "${want_grpc[i]}" || return 1
    stack_free_port "WORKER_METRICS_PORTS[$i]" "${want_metrics[i]}" || return 1
    # Not under ./.flux/work: `make dev-worker` sweeps that whole directory.
    local work="$FLUX_STATE_DIR/scratch/$STACK_MODE-$n"
    mkdir -p "$work" || return 1
    stack_spawn "worker-$n" "$bin_worker" \
      ENV=development \
      WORKER_ID="$STACK_MODE-worker-$n" \
      GRPC_BIND_ADDRESS=127.0.0.1 GRPC_PORT="${WORKER_GRPC_PORTS[i]}" METRICS_PORT="${WORKER_METRICS_PORTS[i]}" \
      WORK_DIR="$work" \
      STORAGE_TYPE=local LOCAL_STORAGE_DIR="$OUTPUT_DIR" LOCAL_INPUT_DIR="$SAMPLES_DIR" \
      DISABLE_AUTO_SHUTDOWN=true DRAIN_TIMEOUT="$drain"
    nodes+=("127.0.0.1:${WORKER_GRPC_PORTS[i]}")
  done

  stack_free_port CP_PORT "$want_cp" || return 1
  CP_URL="http://127.0.0.1:$CP_PORT"
  local nodes_csv
  nodes_csv="$(IFS=,; echo "${nodes[*]}")"
  stack_spawn controlplane "$bin_cp" \
    ENV=development \
    BIND_ADDRESS=127.0.0.1 PORT="$CP_PORT" \
    DATABASE_PATH="$STACK_DATABASE" \
    WORKER_NODES="$nodes_csv" WORKER_STARTUP_TIMEOUT=10 \
    LOCAL_INPUT_DIR="$SAMPLES_DIR" \
    "${STACK_CP_ENV[@]}"

  for i in 0 1; do
    stack_wait_http "worker-$((i + 1))" "http://127.0.0.1:${WORKER_METRICS_PORTS[i]}/health" 30 || return 1
  done
  stack_wait_http controlplane "$CP_URL/ready" 30 || return 1
  # Ready means "store open, workers configured"; wait until it has also
  # reached both workers, so the first job finds them.
  local deadline=$((SECONDS + 30)) up=0
  while [ $SECONDS -lt $deadline ]; do
    up="$(curl -fsS --max-time 5 "$CP_URL/api/v1/workers/status" 2>/dev/null |
          jq '[.workers[] | select(.state == "up")] | length' 2>/dev/null)" || up=0
    [ "${up:-0}" -ge 2 ] && return 0
    local dead
    dead="$(stack_dead_component)"
    if [ -n "$dead" ]; then
      echo "$dead exited during start-up" >&2
      stack_show_log "$dead"
      return 1
    fi
    sleep 0.3
  done
  echo "the control plane did not see both workers up within 30s" >&2
  stack_show_log controlplane
  return 1
}

# _stack_descendants PID: every descendant of PID.
_stack_descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    printf '%s\n' "$child"
    _stack_descendants "$child"
  done
}

# _stack_stop_group GRACE INDEX...: SIGTERM to each, one shared wait of up to
# GRACE seconds, then SIGKILL to what is left and to whatever it started.
# Sets STACK_FAILED=1 when one of them exits with a failure status.
_stack_stop_group() {
  local grace="$1" i
  shift
  for i in "$@"; do
    stack_alive "${STACK_PIDS[$i]}" && kill -TERM "${STACK_PIDS[$i]}" 2>/dev/null
  done
  local deadline=$((SECONDS + grace)) running=1
  while [ "$running" = 1 ] && [ $SECONDS -lt $deadline ] && [ "$STACK_FORCE" = 0 ]; do
    running=0
    for i in "$@"; do stack_alive "${STACK_PIDS[$i]}" && running=1; done
    [ "$running" = 1 ] && sleep 0.1
  done
  for i in "$@"; do
    local pid="${STACK_PIDS[$i]}" name="${STACK_NAMES[$i]}"
    if stack_alive "$pid"; then
      warn "$name (PID $pid) did not stop within ${grace}s of SIGTERM; sending SIGKILL"
      local rest child
      rest="$(_stack_descendants "$pid")"
      kill -KILL "$pid" 2>/dev/null
      # ffmpeg runs in a process group of its own: end each one left behind.
      for child in $rest; do kill -KILL -- "-$child" 2>/dev/null || kill -KILL "$child" 2>/dev/null; done
    fi
    local status=0
    wait "$pid" 2>/dev/null || status=$?
    if [ "$status" -ne 0 ]; then
      warn "$name exited with status $status"
      stack_show_log "$name" 20
      STACK_FAILED=1
    fi
  done
}

# stack_stop: stops everything started: the control plane first (so it does
# not see its workers go and requeue their jobs), then the workers together.
# Returns non-zero when a component exited with a failure status (for example
# a sanitizer report) or had to be killed.
stack_stop() {
  local i cp=() workers=()
  for i in "${!STACK_NAMES[@]}"; do
    if [ "${STACK_NAMES[$i]}" = controlplane ]; then cp+=("$i"); else workers+=("$i"); fi
  done
  STACK_FAILED=0
  local grace="${STACK_STOP_GRACE:-25}"
  [ ${#cp[@]} -gt 0 ] && _stack_stop_group "$grace" "${cp[@]}"
  [ ${#workers[@]} -gt 0 ] && _stack_stop_group "$grace" "${workers[@]}"
  STACK_PIDS=() STACK_NAMES=() STACK_LOGS=()
  # The workers remove each job's directory; drop the emptied work dirs too.
  for i in 1 2; do rmdir "$FLUX_STATE_DIR/scratch/$STACK_MODE-$i" 2>/dev/null || true; done
  rmdir "$FLUX_STATE_DIR/scratch" 2>/dev/null || true
  return "$STACK_FAILED"
}

# stack_make_sample PATH: a 6 s 1280x720 clip with a 440 Hz tone, written
# through a temporary file so an interrupted run leaves no half clip.
stack_make_sample() {
  local path="$1"
  [ -s "$path" ] && return 0
  local tmp="$path.partial.mp4"
  STACK_SAMPLE_TMP="$tmp"
  if ! ffmpeg -hide_banner -loglevel error -nostdin -y \
        -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=6" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=6" \
        -map 0:v -map 1:a -c:v libx264 -preset veryfast -pix_fmt yuv420p \
        -c:a aac -b:a 128k -shortest -movflags +faststart "$tmp"; then
    rm -f "$tmp"
    STACK_SAMPLE_TMP=""
    echo "ffmpeg could not generate the sample clip" >&2
    return 1
  fi
  mv -f "$tmp" "$path"
  STACK_SAMPLE_TMP=""
}
