#!/usr/bin/env bash
# The API double at cluster size: bench.py's list, writes and fanout against a fresh double.
#   tests/apiserver/bench.sh [bench.py options, e.g. --watchers 20 --events 5000]
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
D=$(mktemp -d /tmp/sluice-apiserver-bench.XXXXXX)
trap 'api_down; rm -rf "$D"' EXIT
trap 'exit 130' INT TERM
api_up "$D/api" || exit 1
"$API_PYTHON" "$here/bench.py" --url "$API_URL" --ca "$API_CA" --token "$(api_token admin)" \
	--pid "$(cat "$API_DIR/pid")" "$@"
