#!/bin/sh
# run.sh BUILD_DIR SECONDS [NAME...]: run each libFuzzer harness of BUILD_DIR/fuzz
# (all five when no NAME is given) for SECONDS, one process on one core, from its
# seed corpus tests/fuzz/<name>/ plus the inputs it found before (BUILD_DIR/fuzz/corpus/
# <name>, kept between runs; the seeds in the repository stay as they are). A crash,
# leak, sanitizer report or timeout leaves the input in BUILD_DIR/fuzz/artifacts/ and
# makes the run fail. Prints, per harness, the inputs run and the time taken.
set -u
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
names=${*:-csv safetensors kernel_message nn_load config}
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
mkdir -p "$build/fuzz/artifacts"
status=0
for name in $names; do
  bin="$build/fuzz/fuzz_$name"
  corpus="$build/fuzz/corpus/$name"
  log="$build/fuzz/$name.log"
  mkdir -p "$corpus"
  # the Lua harnesses keep one lua_State whose garbage outlives each input: libFuzzer's
  # leak check after each input would see that as leaks; LeakSanitizer still checks at
  # exit, after lua_close
  case $name in nn_load | config) leaks=0 ;; *) leaks=1 ;; esac
  start=$(date +%s)
  # -timeout: one input may take 10 s (a slow input is a finding too); -rss_limit_mb:
  # the harness's memory, ASan's shadow and quarantine included
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=3072 -print_final_stats=1 -detect_leaks=$leaks \
    -artifact_prefix="$build/fuzz/artifacts/${name}-" "$corpus" "$here/$name" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz_$name: ${runs:-?} inputs in $(( $(date +%s) - start )) s (exit $rc)"
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    status=1
  fi
done
exit $status
