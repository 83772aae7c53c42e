#!/bin/sh
# pgtmp.sh: a throwaway PostgreSQL for the unit tests (tests/unit/test_state.c;
# the integration tests have the same in tests/integ/harness.py, class
# Postgres). Listens on 127.0.0.1 only, on a free port, with its socket and
# data in DIR; the user "imapferry" logs in with the password "throwaway"
# (scram-sha-256), so clients take it from PGPASSWORD as in production.
#
#   pgtmp.sh start DIR          prints the URL postgresql://imapferry@127.0.0.1:PORT
#   pgtmp.sh createdb DIR NAME  a new empty database
#   pgtmp.sh psql DIR NAME SQL  runs SQL in database NAME (output: unaligned rows)
#   pgtmp.sh stop DIR           stops the server (immediate shutdown)
#
# Exit status 77 (and a message) when the PostgreSQL binaries are missing:
# callers skip. initdb refuses root: as root the server runs as "postgres".
set -eu
cmd=$1
dir=$2
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
	echo "pgtmp.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
	exit 77
fi
run=""
if [ "$(id -u)" = 0 ]; then
	run="runuser -u postgres --"
fi
export PGPASSWORD=throwaway
port() { cat "$dir/port"; }
case $cmd in
start)
	if [ -n "$run" ]; then
		chown postgres "$dir"
	fi
	printf 'throwaway\n' >"$dir/pw"
	chmod 644 "$dir/pw"
	$run "$bindir/initdb" -D "$dir/data" -U imapferry --pwfile="$dir/pw" \
		--auth-host=scram-sha-256 --auth-local=trust -E SQL_ASCII \
		--locale=C >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		exit 1
	}
	p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	echo "$p" >"$dir/port"
	$run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $p -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >/dev/null || {
		cat "$dir/server.log" >&2
		exit 1
	}
	echo "postgresql://imapferry@127.0.0.1:$p"
	;;
createdb)
	"$bindir/createdb" -h 127.0.0.1 -p "$(port)" -U imapferry "$3"
	;;
psql)
	"$bindir/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port)" \
		-U imapferry -d "$3" -c "$4"
	;;
stop)
	$run "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	;;
*)
	echo "usage: pgtmp.sh start|createdb|psql|stop DIR ..." >&2
	exit 2
	;;
esac
