#!/usr/bin/env bash
# The test command (README, CI): build, unit + integration tests, the same
# under AddressSanitizer/UBSan, the threaded tests under ThreadSanitizer,
# a short libFuzzer run of every fuzz target, then the Debian package
# built, installed and checked (scripts/package.sh). Run as root on Debian
# 12 after scripts/install-deps.sh: the
# integration tests start throwaway Dovecot/Cyrus servers.
#
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -R integ/       extra arguments go to both ctest runs
#   SANITIZE=0 ./scripts/test.sh      skip the sanitizer build
#   TSAN=0 ./scripts/test.sh          skip the ThreadSanitizer build (it runs
#                                     only the threaded tests, $TSAN_TESTS)
#   FUZZ_SECONDS=0 ./scripts/test.sh  skip fuzzing (default 60 s per target)
#   PACKAGE=0 ./scripts/test.sh       skip building and installing the .deb
#   JOBS=4 ./scripts/test.sh          build and ctest parallelism (default 2)
#
# Every stage runs even if an earlier one failed (except the tests of a build
# that failed); the exit status is non-zero if any stage failed.
set -uo pipefail

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "test.sh: run as root: the integration tests start IMAP servers" >&2
	exit 2
fi

JOBS=${JOBS:-2}
SANITIZE=${SANITIZE:-1}
TSAN=${TSAN:-1}
# The tests that run threads: the reader/writer queue, the threaded fake
# servers of test_net and test_pop3, the scheduler, the integration tests
# with a reader thread per copy and parallel workers, and the fault suite
# (reader, keepalive and worker threads through cuts, stalls, kills, a
# full disk and a hostile server).
TSAN_TESTS=${TSAN_TESTS:-'^(unit/test_(mqueue|net|pop3|sched|keepalive|maildir)|integ/test_(copy|run)|faults/test_fault_(net|kill|disk|hostile))$'}
# The fault suite under the sanitizers, with fewer kills and cuts (the
# code paths are the same; the default stage runs the full counts).
SAN_FAULT_KILLS=${SAN_FAULT_KILLS:-6}
SAN_FAULT_CUTS=${SAN_FAULT_CUTS:-10}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
PACKAGE=${PACKAGE:-1}
failed=()
start=$SECONDS

stage() {
	local name=$1 t0=$SECONDS
	shift
	echo
	echo "=== $name"
	if "$@"; then
		echo "=== $name: ok ($((SECONDS - t0)) s)"
	else
		echo "=== $name: FAILED ($((SECONDS - t0)) s)"
		failed+=("$name")
		return 1
	fi
}

build() { # preset
	cmake --preset "$1" && cmake --build --preset "$1" -j "$JOBS"
}

fuzz_all() {
	local dir=build-fuzz/fuzz n=0 rc=0 t name seeds work
	mkdir -p build-fuzz/artifacts
	for t in "$dir"/fuzz_*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		name=$(basename "$t")
		seeds=fuzz/corpus/${name#fuzz_}
		work=$(mktemp -d /tmp/ife-fuzz-XXXXXX)
		if [ -d "$seeds" ]; then
			cp -R "$seeds"/. "$work"/
		fi
		echo "--- $name: ${FUZZ_SECONDS} s, seeds from $seeds"
		if ! "$t" -max_total_time="$FUZZ_SECONDS" -timeout=25 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$name-" \
			"$work" 2>&1 | tail -n 25; then
			echo "--- $name: FAILED (crash input in build-fuzz/artifacts/)"
			rc=1
		fi
		rm -rf "$work"
		n=$((n + 1))
	done
	if [ "$n" = 0 ]; then
		echo "no fuzz targets in $dir"
	fi
	return $rc
}

if stage "build (default)" build default; then
	stage "ctest (default)" ctest --test-dir build --output-on-failure -j "$JOBS" "$@"
fi

# What the sanitize stage leaves out (a ctest -E pattern; empty: nothing).
# The fault suite runs there with SAN_FAULT_KILLS kills and SAN_FAULT_CUTS
# cuts.
SAN_EXCLUDE="${SAN_EXCLUDE-}"

if [ "$SANITIZE" = 1 ]; then
	if stage "build (sanitize)" build sanitize; then
		stage "ctest (sanitize)" env \
			ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" \
			UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
			IMAPFERRY_FAULT_KILLS="$SAN_FAULT_KILLS" \
			IMAPFERRY_FAULT_CUTS="$SAN_FAULT_CUTS" \
			ctest --test-dir build-san --output-on-failure -j "$JOBS" \
			${SAN_EXCLUDE:+-E "$SAN_EXCLUDE"} "$@"
	fi
else
	echo "=== sanitizer build skipped (SANITIZE=$SANITIZE)"
fi

if [ "$TSAN" = 1 ]; then
	if ! command -v clang >/dev/null; then
		echo "=== ThreadSanitizer build skipped: clang is not installed"
		failed+=("tsan (no clang)")
	elif stage "build (tsan)" build tsan; then
		# halt_on_error: the first race fails the test that hit it
		stage "ctest (tsan)" env \
			TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
			IMAPFERRY_FAULT_KILLS="$SAN_FAULT_KILLS" \
			IMAPFERRY_FAULT_CUTS="$SAN_FAULT_CUTS" \
			ctest --test-dir build-tsan --output-on-failure -j "$JOBS" \
			-R "$TSAN_TESTS"
	fi
else
	echo "=== ThreadSanitizer build skipped (TSAN=$TSAN)"
fi

if [ "$FUZZ_SECONDS" = 0 ]; then
	echo "=== fuzzing skipped (FUZZ_SECONDS=0)"
elif ! command -v clang >/dev/null; then
	echo "=== fuzzing skipped: clang is not installed"
elif [ ! -f fuzz/CMakeLists.txt ]; then
	echo "=== fuzzing skipped: no fuzz/CMakeLists.txt"
else
	if stage "build (fuzz)" build fuzz; then
		stage "fuzz (${FUZZ_SECONDS} s per target)" fuzz_all
	fi
fi

if [ "$PACKAGE" = 1 ]; then
	stage "package (build, install, check the .deb)" env JOBS="$JOBS" \
		./scripts/package.sh
else
	echo "=== package skipped (PACKAGE=$PACKAGE)"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
	echo "test.sh: FAILED: ${failed[*]} ($((SECONDS - start)) s)"
	exit 1
fi
echo "test.sh: all stages passed ($((SECONDS - start)) s)"
