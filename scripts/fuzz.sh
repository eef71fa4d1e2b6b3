#!/usr/bin/env bash
# Fuzzes the operator-file parser (testing/fuzz/FuzzOperatorFile.cpp) with
# libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   bash scripts/fuzz.sh [seconds]      (default 60)
#
# Configures build-fuzz/ with clang, builds the fuzz target and the seed
# generator, writes the seed corpus (small valid operator files and damaged
# copies), then fuzzes for the given time, starting from those, the past
# findings in testing/fuzz/corpus/ and the corpus of earlier runs, kept in
# build-fuzz/fuzz/corpus/. A finding is written to build-fuzz/fuzz/findings/
# and makes the script fail. Reproduce one with
#   build-fuzz/bin/fuzz_operator_file build-fuzz/fuzz/findings/<file>
# JKO_FUZZ_STEP=1 in the environment adds one learned step per loaded file.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
jobs="${JKO_JOBS:-$(nproc)}"
bash scripts/install-debian-packages.sh

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DJKO_FUZZ=ON -DJKO_BUILD_PLUGIN=OFF -DJKO_BUILD_BENCHMARKS=OFF -DBUILD_TESTING=OFF
nice cmake --build build-fuzz -j "$jobs" --target fuzz_operator_file make_operator_seeds

work=build-fuzz/fuzz
mkdir -p "$work/corpus" "$work/findings"
rm -rf "$work/seeds"
# The generator runs instrumented code too; a report there fails the script.
build-fuzz/bin/make_operator_seeds "$work/seeds"

# LeakSanitizer stays on: every input runs in one process, so a leak per
# input would grow without bound. malloc_limit_mb (= rss_limit_mb) turns any
# single allocation above 2 GiB into a finding.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
set +e
build-fuzz/bin/fuzz_operator_file "$work/corpus" "$work/seeds" testing/fuzz/corpus \
  -dict=testing/fuzz/operator_file.dict \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -artifact_prefix="$work/findings/" -print_final_stats=1 -print_funcs=0
status=$?
set -e
if [ $status -ne 0 ]; then
  echo "fuzz.sh: a finding, written to $work/findings/ (status $status)" >&2
  exit $status
fi
echo "fuzz.sh: no finding in ${seconds} s; corpus: $(ls "$work/corpus" | wc -l) inputs in $work/corpus"
