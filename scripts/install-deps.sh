#!/bin/sh
# Installs, from Debian, everything imapferry needs to build, test and
# benchmark. Idempotent; run as root on Debian 12.
set -eu
export DEBIAN_FRONTEND=noninteractive
# Keep package postinst scripts from starting system daemons (dovecot, ...):
# the test harness starts its own throwaway instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi
apt-get update
apt-get install -y --no-install-recommends \
	build-essential cmake ninja-build pkg-config clang llvm libclang-rt-14-dev \
	libssl-dev libsqlite3-dev libpq-dev zlib1g-dev libcmocka-dev \
	dovecot-core dovecot-imapd dovecot-pop3d isync openssl python3 \
	ca-certificates procps sqlite3
