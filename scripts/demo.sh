#!/usr/bin/env bash
# Demo: two throwaway Dovecot servers on 127.0.0.1 (a source filled with a
# generated corpus, an empty target) and imapferry run against them; the
# servers are stopped at the end. Run as root after building:
#   cmake --preset default && cmake --build build && ./scripts/demo.sh [--hold]
# --hold keeps the servers up until Enter, to try commands by hand.
# The steps are in tests/integ/demo.py; servers come from tests/integ/harness.py.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export IMAPFERRY_SRC="$root"
export IMAPFERRY_BIN="${IMAPFERRY_BIN:-$root/build/src/cli/imapferry}"
exec python3 "$root/tests/integ/demo.py" "$@"
