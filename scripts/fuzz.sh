#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan) in build/fuzz
# and runs each for FUZZ_SECONDS on a fresh copy of its seed corpus (the
# committed seeds stay small; what a run adds stays in build/fuzz/corpus).
# Fails when any target reports a crash, a sanitizer error, a leak, a
# timeout or running out of memory. Prints, and writes to
# build/fuzz/summary.md, each target's executions, exec/s, corpus growth
# and coverage (libFuzzer's cov: and ft:).
#
#   scripts/fuzz.sh                 build, run every target
#   scripts/fuzz.sh --report        ... then rewrite "## Fuzzing" in docs/RELIABILITY.md
#   scripts/fuzz.sh --report-only   rewrite it from the last build/fuzz/summary.md
#   scripts/fuzz.sh --build-only    build the targets, run nothing (make test builds
#                                   them beside ctest)
#
# Environment: FUZZ_SECONDS (60) per target; FUZZ_JOBS (1) targets fuzzed
# at a time, one libFuzzer process each, at most 2; FUZZ_TARGETS (all), e.g.
# "s3_xml hls_playlist"; JOBS build parallelism, at most 2; FUZZ_BUILD_DIR
# (build/fuzz).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
PARALLEL=${FUZZ_JOBS:-1}
((PARALLEL >= 1 && PARALLEL <= 2)) || PARALLEL=$((PARALLEL < 1 ? 1 : 2))
BUILD_JOBS=${JOBS:-2}
((BUILD_JOBS >= 1 && BUILD_JOBS <= 2)) || BUILD_JOBS=2
ALL_TARGETS=(job_request http_request hls_playlist dash_manifest ffmpeg_progress s3_xml)
read -r -a TARGETS <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"
SUMMARY=$BUILD/summary.md
REPORT_FILE=$ROOT/docs/RELIABILITY.md

# Longest input per target: above every size limit its code has (16 KiB
# of HTTP header, the 64 KiB body cap is reached by Content-Length) while
# keeping mutations cheap.
declare -A MAX_LEN=(
  [job_request]=8192 [http_request]=20480 [hls_playlist]=16384
  [dash_manifest]=32768 [ffmpeg_progress]=8192 [s3_xml]=8192
)

# Sanitizer settings when not run from make (which exports its own).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- docs/RELIABILITY.md ------------------------------------------------------

write_report() {
  [[ -f $SUMMARY ]] || { echo "fuzz.sh: no $SUMMARY yet: run scripts/fuzz.sh first" >&2; exit 1; }
  local section
  section=$(mktemp)
  {
    cat <<'EOF'
## Fuzzing

libFuzzer targets in `fuzz/`, built with clang and AddressSanitizer +
UndefinedBehaviorSanitizer (`-DFLUX_FUZZ=ON`, in `build/fuzz`). Each drives
the real parser on untrusted bytes and checks invariants of its result, not
only the absence of crashes:

| target | code under test | invariants beyond "no crash" |
|---|---|---|
| `job_request` | `POST /api/v1/jobs` body: strict JSON + `api::parse_job_request` | a refusal has a documented code, HTTP 400 and a body that serialises; an accepted spec obeys every rule (URL policy, preset, storage, path, type, metadata, priority) and its job document re-validates to the same spec; strict JSON agrees with nlohmann |
| `http_request` | raw bytes → Beast request parser (16 KiB header, 64 KiB body caps) → the router with the control plane's route table → query parsing → API-key check → the handlers' validation | acceptance does not depend on how the bytes arrive; a path is refused exactly when `router.h` says so; a found route is found again from its pattern and decoded parameters; 405's `Allow` methods serve the path; queries and only the right `Bearer` key round-trip |
| `hls_playlist` | `validator::parse_hls_playlist`, `parse_hls_attributes` | one segment per `#EXTINF`, one variant per `#EXT-X-STREAM-INF`, never both; durations finite and within the target; the canonical rewrite parses to the same playlist |
| `dash_manifest` | `validator::parse_dash_manifest` (tinyxml2, BaseURL, SegmentTemplate/Timeline/List) | every representation has an id and files, no empty file name, at most 500000 files; the canonical rewrite (SegmentList) gives the same files |
| `ffmpeg_progress` | `process::LineReader` + `encoder::ProgressParser` | lines independent of read sizes; percent in 0..100, never decreasing, 100 only at the end; fps, speed, eta and out_time never negative or NaN |
| `s3_xml` | `s3::parse_s3_error`, `parse_initiate_multipart`, `parse_complete_multipart`, `build_complete_multipart` | the parsers agree on `<Error>` documents and use only documented codes; the CompleteMultipartUpload body gives back each ETag byte for byte |

Seeds (a few real ffmpeg outputs and hand-written requests, under 100 KB in
all) are in `fuzz/corpus/<target>/`, dictionaries in `fuzz/<target>.dict`.
A run works on a copy in `build/fuzz/corpus/`; crashes land in
`build/fuzz/artifacts/<target>/` and replay with
`build/fuzz/bin/<target>_fuzzer <file>`.

    make fuzz                   # every target for 60 s, rewrites this section
    make fuzz FUZZ_SECONDS=600 FUZZ_JOBS=2   # longer, two targets at a time
    make fuzz-ci                # every target for 5 s, two at a time, build included (make test)
    FUZZ_TARGETS=s3_xml scripts/fuzz.sh

EOF
    echo "### Latest run"
    echo
    cat "$SUMMARY"
    echo
    echo "### Finds"
    echo
    cat "$ROOT/fuzz/FINDS.md"
  } >"$section"

  local current
  current=$(mktemp)
  if [[ -f $REPORT_FILE ]]; then
    cp "$REPORT_FILE" "$current"
  else
    printf '# Reliability\n\nHow the service holds up under hostile input and failure, and how that is\nproven. Each section is rewritten by the run that measures it.\n' >"$current"
  fi
  # Replace the section (up to the next "## " heading) or append it.
  awk -v section="$section" '
    BEGIN { while ((getline line < section) > 0) block = block line "\n" }
    /^## / {
      skipping = 0
      if ($0 == "## Fuzzing") { printf "%s\n", block; skipping = 1; written = 1; next }
    }
    !skipping { print }
    END { if (!written) printf "\n%s", block }
  ' "$current" >"$REPORT_FILE.tmp"
  mv "$REPORT_FILE.tmp" "$REPORT_FILE"
  rm -f "$section" "$current"
  echo "fuzz.sh: wrote the Fuzzing section of ${REPORT_FILE#"$ROOT"/}"
}

if [[ ${1:-} == --report-only ]]; then
  write_report
  exit 0
fi

# ---- build --------------------------------------------------------------------

started=$(date +%s)
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFLUX_FUZZ=ON >/dev/null
cmake --build "$BUILD" --target fuzzers -j "$BUILD_JOBS"
built=$(date +%s)
if [[ ${1:-} == --build-only ]]; then
  echo "fuzz.sh: targets built in $((built - started)) s"
  exit 0
fi

# ---- run ----------------------------------------------------------------------

# The last "cov: N ft: M" of a libFuzzer log, as "N M".
coverage_of() { grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -1 | awk '{print $2, $4}'; }
# N of a "stat::<name>: N" line of a libFuzzer log (-print_final_stats=1), 0 when absent.
stat_of() {
  local value
  value=$(sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -1)
  echo "${value:-0}"
}

# One target: fuzz, then leave its console lines, its summary row and its
# verdict in its log directory (it runs in the background).
run_target() {
  local target=$1
  local binary=$BUILD/bin/${target}_fuzzer
  local corpus=$BUILD/corpus/$target
  local artifacts=$BUILD/artifacts/$target
  local logs=$BUILD/logs/$target
  local log=$logs/fuzz.log
  local seeds status=0 executions rate cov ft files bytes finds result=ok
  seeds=$(find "$corpus" -type f | wc -l)
  local args=(-max_total_time="$SECONDS_EACH" -max_len="${MAX_LEN[$target]}" -timeout=10 -rss_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$artifacts/")
  if [[ -f $ROOT/fuzz/$target.dict ]]; then args+=(-dict="$ROOT/fuzz/$target.dict"); fi
  "$binary" "${args[@]}" "$corpus" >"$log" 2>&1 || status=$?

  executions=$(stat_of "$log" number_of_executed_units)
  rate=$(stat_of "$log" average_exec_per_sec)
  read -r cov ft <<<"$(coverage_of "$log")"
  files=$(find "$corpus" -type f | wc -l)
  bytes=$(du -sb "$corpus" | cut -f1)
  finds=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  {
    echo "== $target: ${SECONDS_EACH} s from $seeds seeds"
    if ((status != 0)) || [[ -n $finds ]]; then
      result="FAILED (exit $status)"
      grep -hE 'invariant violated|^SUMMARY|ERROR: libFuzzer|runtime error' -A1 "$log" | head -6 | sed 's/^/   | /' || true
      for file in $finds; do echo "   reproduce: ${binary#"$ROOT"/} ${file#"$ROOT"/}"; done
    fi
    printf '   executions %s, %s exec/s, corpus %s -> %s files (%s KiB), cov %s, ft %s: %s\n' \
      "$executions" "$rate" "$seeds" "$files" "$((bytes / 1024))" "${cov:-0}" "${ft:-0}" "$result"
  } >"$logs/console"
  echo "| \`$target\` | $executions | $rate | $seeds → $files | ${cov:-0} | ${ft:-0} | $result |" >"$logs/row"
  echo "$result" >"$logs/result"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
for target in "${TARGETS[@]}"; do
  [[ -x $BUILD/bin/${target}_fuzzer ]] || { echo "fuzz.sh: no $BUILD/bin/${target}_fuzzer" >&2; exit 1; }
  rm -rf "$BUILD/corpus/$target" "$BUILD/artifacts/$target" "$BUILD/logs/$target"
  mkdir -p "$BUILD/corpus/$target" "$BUILD/artifacts/$target" "$BUILD/logs/$target"
  cp "$ROOT/fuzz/corpus/$target/"* "$BUILD/corpus/$target/"
done
echo "fuzz.sh: ${#TARGETS[@]} targets, ${SECONDS_EACH} s each, $PARALLEL at a time"
running=0
for target in "${TARGETS[@]}"; do
  run_target "$target" &
  running=$((running + 1))
  if ((running >= PARALLEL)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
rows=()
failed=()
for target in "${TARGETS[@]}"; do
  cat "$BUILD/logs/$target/console" 2>/dev/null || echo "== $target: no result"
  rows+=("$(cat "$BUILD/logs/$target/row" 2>/dev/null || echo "| \`$target\` | | | | | | no result |")")
  [[ $(cat "$BUILD/logs/$target/result" 2>/dev/null) == ok ]] || failed+=("$target")
done
finished=$(date +%s)

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'): ${SECONDS_EACH} s per target, $PARALLEL at a time (FUZZ_JOBS)," \
    "$(clang --version | head -1), $(nproc) cores, load average $load at the start;" \
    "build $((built - started)) s, fuzzing $((finished - built)) s."
  echo
  echo "| target | executions | exec/s | corpus files (seeds → end) | cov | ft | result |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$SUMMARY"
echo "fuzz.sh: build $((built - started)) s, fuzzing $((finished - built)) s; summary in ${SUMMARY#"$ROOT"/}"

if [[ ${1:-} == --report ]]; then write_report; fi
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]} (inputs in ${BUILD#"$ROOT"/}/artifacts/)" >&2
  exit 1
fi
